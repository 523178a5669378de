package cli

import (
	"fmt"
	"strings"

	"github.com/elemta/elemta/internal/mailbox"
)

// maildirMigrate runs `elemta maildir migrate`: it finds the Maildirs under
// [server] maildir_root that an earlier version named by other rules (a
// local part's capitals kept, a domain in UTF-8) and moves their mail to
// where delivery writes now. It exits 0 when nothing is left to do, 1 when
// something needs a person (a name in both, a reader's folders), listing it.
func (a *app) maildirMigrate(args []string) int {
	fs := a.flagSet("maildir migrate", "maildir migrate [--config F] [--dry-run]")
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	dryRun := fs.Bool("dry-run", false, "list the moves without making them")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return ExitError
	}
	cfg, err := a.loadConfig(*cfgPath)
	if err != nil {
		return a.errorf("maildir migrate: %v", err)
	}
	root := cfg.Server.MaildirRoot
	strays, err := mailbox.Strays(root)
	if err != nil {
		return a.errorf("maildir migrate: %v", err)
	}
	if len(strays) == 0 {
		fmt.Fprintf(a.stdout, "%s: every Maildir has the name delivery gives it\n", root)
		return ExitAccept
	}
	status := ExitAccept
	for _, s := range strays {
		if *dryRun {
			fmt.Fprintf(a.stdout, "%s -> %s\n", s.From, s.To)
			continue
		}
		m, err := mailbox.Move(s)
		switch {
		case err != nil:
			fmt.Fprintf(a.stdout, "%s -> %s: %v\n", s.From, s.To, err)
			status = ExitError
		case m.Renamed:
			fmt.Fprintf(a.stdout, "%s -> %s: renamed\n", s.From, s.To)
		default:
			fmt.Fprintf(a.stdout, "%s -> %s: %d messages moved\n", s.From, s.To, m.Messages)
		}
		if len(m.Left) > 0 {
			fmt.Fprintf(a.stdout, "  left in %s (a name %s has too, or a reader's folders and files): %s\n",
				s.From, s.To, strings.Join(m.Left, ", "))
			status = ExitError
		}
	}
	return status
}
