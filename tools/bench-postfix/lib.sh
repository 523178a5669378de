# lib.sh — helpers shared by run.sh and run-signed.sh (source it).

# cpu PID: CPU ticks of PID, its live children and its reaped children.
cpu() {
  local pid=$1 total=0 f
  read -r -a f <<<"$(sed 's/^.*) //' /proc/"$pid"/stat)"
  total=$(( f[11] + f[12] + f[13] + f[14] ))   # utime stime cutime cstime
  for c in $(pgrep -P "$pid" || true); do
    if read -r -a f <<<"$(sed 's/^.*) //' /proc/"$c"/stat 2>/dev/null)"; then
      total=$(( total + f[11] + f[12] ))
    fi
  done
  echo "$total"
}

# count DIR: files in DIR (a Maildir's new/).
count() { find "$1" -type f 2>/dev/null | wc -l; }

# start_bench_postfix HERE DIR PORT: the private Postfix of start-postfix.sh,
# with default_process_limit raised so 50 sessions get 50 smtpd processes.
start_bench_postfix() {
  "$1/start-postfix.sh" "$2" "$3"
  # Postfix's own limits would cap 50 sessions: let it run as many smtpd as
  # there are sessions, as elemta does.
  postconf -c "$2/etc" -e 'default_process_limit = 200' >/dev/null
  postfix -c "$2/etc" reload >/dev/null 2>&1
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "bench-postfix: nothing listens on 127.0.0.1:$1" >&2; return 1
}

# wait_count DIR WANT: until DIR holds WANT files (5 minutes at most).
wait_count() {
  for _ in $(seq 6000); do [ "$(count "$1")" -ge "$2" ] && return 0; sleep 0.05; done
  return 0
}

# report MTA SESSIONS MSGS T0 T1 TICKS: one result line.
report() {
  awk -v m="$1" -v s="$2" -v n="$3" -v t0="$4" -v t1="$5" -v c="$6" -v tck="$(getconf CLK_TCK)" \
    'BEGIN { printf "%-8s %8d %10.0f %14.2f\n", m, s, n/(t1-t0), c/tck/n*1000 }'
}

# measure ROOT EL_PID: for each of $SESSIONS, Postfix then Elemta, $MSGS
# messages sent with the caller's `send PORT SESSIONS` ($PF_PORT, $EL_PORT):
# one report line each, timed until every message is in the Maildir.
measure() {
  local root=$1 el_pid=$2 s mta pid port box want c0 c1 t0 t1 got delivered_pf=0 delivered_el=0
  printf '%-8s %8s %10s %14s\n' mta sessions msgs/s cpu-s/1000msg
  for s in $SESSIONS; do
    for mta in postfix elemta; do
      if [ "$mta" = postfix ]; then
        pid=$(tr -d ' ' <"$root/pf/spool/pid/master.pid"); port=$PF_PORT
        box="$root/pf/vmail/example.test/postmaster/new"; want=$(( delivered_pf + MSGS ))
      else
        pid=$el_pid; port=$EL_PORT
        box="$root/el/mail/example.test/postmaster/new"; want=$(( delivered_el + MSGS ))
      fi
      c0=$(cpu "$pid"); t0=$(date +%s.%N)
      send "$port" "$s"
      wait_count "$box" "$want"
      t1=$(date +%s.%N); c1=$(cpu "$pid")
      got=$(count "$box")
      [ "$got" -ge "$want" ] || { echo "bench-postfix: $mta delivered $got of $want" >&2; exit 1; }
      if [ "$mta" = postfix ]; then delivered_pf=$want; else delivered_el=$want; fi
      report "$mta" "$s" "$MSGS" "$t0" "$t1" "$(( c1 - c0 ))"
    done
  done
}
