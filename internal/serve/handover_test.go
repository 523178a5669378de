package serve

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cloudflare/tableflip"
)

// dieAfterHandover, set in a server's environment, makes this test binary,
// installed as the server's executable, the new process of an upgrade
// that fails after the old one released the spool: it takes the handover
// like a real one and exits before it is ready.
const dieAfterHandover = "ELEMTA_TEST_DIE_AFTER_HANDOVER"

// DieAfterHandoverEnv is dieAfterHandover for the external tests.
const DieAfterHandoverEnv = dieAfterHandover

func failAfterHandover() int {
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "failing child:", err)
		return 2
	}
	file, err := upg.File(handoverFile)
	if err != nil || file == nil {
		fmt.Fprintln(os.Stderr, "failing child: no handover socket", err)
		return 2
	}
	c, err := net.FileConn(file)
	if err != nil {
		return 2
	}
	fmt.Fprintln(c, msgPrepared)
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Fprintf(os.Stderr, "failing child: got %q, exiting before ready\n", strings.TrimSpace(line))
	return 3
}
