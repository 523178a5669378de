// The pid file and the status files `elemta reload` and `elemta upgrade`
// read.

package serve

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// handoverTimeout bounds a whole upgrade: upgrade_timeout for the new
// process to be prepared and then to be serving, shutdown_timeout for the
// old one's drain in between.
func (c Config) handoverTimeout() time.Duration {
	return 2*c.UpgradeTimeout.D() + c.ShutdownTimeout.D()
}

// Status is what a status file holds: the outcome of the last reload or
// upgrade, with a sequence number that grows with each one.
type Status struct {
	Seq    int64           `json:"seq"`
	PID    int             `json:"pid"`
	Report json.RawMessage `json:"report"`
}

// StatusPath is the status file of action ("reload", "upgrade") next to
// the pid file: <pid_file>.<action>.json.
func StatusPath(pidPath, action string) string { return pidPath + "." + action + ".json" }

// writeStatus writes the outcome of action (atomically: a reader never
// sees half of it).
func writeStatus(pidPath, action string, report any, log *slog.Logger) {
	data, err := json.Marshal(report)
	if err == nil {
		data, err = json.MarshalIndent(Status{Seq: time.Now().UnixNano(), PID: os.Getpid(), Report: data}, "", "  ")
	}
	if err == nil {
		err = writeAtomic(StatusPath(pidPath, action), append(data, '\n'))
	}
	if err != nil {
		log.Error("write status file", "action", action, "err", err)
	}
}

// ReadStatus reads the status file of action; a missing file is a zero
// Status.
func ReadStatus(pidPath, action string) (Status, error) {
	var st Status
	data, err := os.ReadFile(StatusPath(pidPath, action))
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", StatusPath(pidPath, action), err)
	}
	return st, nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadPID returns the pid in the pid file.
func ReadPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q is not a pid", path, strings.TrimSpace(string(data)))
	}
	return pid, nil
}

// removePID removes the pid file if it still names this process.
func removePID(path string) {
	if pid, err := ReadPID(path); err == nil && pid == os.Getpid() {
		_ = os.Remove(path)
	}
}
