// AUTH PLAIN and LOGIN against a bcrypt credentials file.

package smtpd

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

func (s *session) AuthMechanisms() []string {
	if s.be.cfg.Credentials == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.be.cfg.Credentials == nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			return s.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// Replies of AUTH throttling.
var (
	errAuthThrottled = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures, try again later"}
	errAuthTooMany   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures, closing connection"}
)

// login checks a user's password under the AUTH limits: a client or user
// over its failures in the window is refused without a password check; a
// failure is answered after a delay that grows with the failures before
// it; the connection closes after max_auth_failures.
func (s *session) login(username, password string) error {
	if err := s.cc.alive(); err != nil {
		return err
	}
	srv := s.be.srv
	if srv.auth.blocked(s.cc.key, username) {
		srv.counters.authThrottled.Add(1)
		s.log.Info("auth throttled", "user", username)
		return s.authFailed(errAuthThrottled)
	}
	if !s.be.cfg.Credentials.Check(username, password) {
		srv.counters.authFailures.Add(1)
		delay := srv.auth.fail(s.cc.key, username)
		s.log.Info("auth failed", "user", username, "delay", delay)
		s.cc.pause(delay)
		return s.authFailed(smtp.ErrAuthFailed)
	}
	s.mu.Lock()
	s.authUser = username
	s.mu.Unlock()
	srv.counters.authSuccesses.Add(1)
	s.log.Info("authenticated", "user", username)
	return nil
}

// authFailed counts a failure of the connection and returns the reply: the
// 421 that closes the connection once it had max_auth_failures.
func (s *session) authFailed(reply *smtp.SMTPError) error {
	s.cc.authFailures++
	if s.cc.authFailures >= s.be.srv.limits.MaxAuthFailures {
		s.cc.closeAfterReply("max_auth_failures")
		return errAuthTooMany
	}
	return s.refuse(reply)
}

// loginServer is the server side of the (obsolete but common) LOGIN
// mechanism, which go-sasl implements only as a client: "Username:",
// "Password:" challenges; an initial response is the user name.
type loginServer struct {
	auth func(user, pass string) error
	step int
	user string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if len(response) == 0 {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.user, string(response))
	}
	return nil, false, smtp.ErrAuthFailed
}

// Credentials maps user names to bcrypt password hashes.
type Credentials struct {
	hashes map[string][]byte
	// decoy is compared for unknown users: a hash of the highest cost in
	// the file, so an unknown user costs what a known one does.
	decoy []byte
}

// Check reports whether password is user's. Unknown users cost a bcrypt
// comparison of the same cost, so timing does not tell them apart.
func (c *Credentials) Check(user, password string) bool {
	hash, ok := c.hashes[user]
	if !ok {
		hash = c.decoy
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && ok
}

// Len is the number of users.
func (c *Credentials) Len() int { return len(c.hashes) }

// LoadCredentials reads a credentials file: one "user:bcrypt-hash" per
// line (htpasswd -B format); blank lines and lines starting with # are
// ignored.
func LoadCredentials(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	return ParseCredentials(path, f)
}

// ParseCredentials parses the credentials file format from r; name is used
// in errors.
func ParseCredentials(name string, r io.Reader) (*Credentials, error) {
	c := map[string][]byte{}
	decoyCost := bcrypt.MinCost
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("credentials: %s:%d: want user:bcrypt-hash", name, n)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("credentials: %s:%d: user %s: not a bcrypt hash: %w", name, n, user, err)
		}
		decoyCost = max(decoyCost, cost)
		if _, dup := c[user]; dup {
			return nil, fmt.Errorf("credentials: %s:%d: user %s listed twice", name, n, user)
		}
		c[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("credentials: %s: %w", name, err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	decoy, err := bcrypt.GenerateFromPassword(secret[:], decoyCost)
	if err != nil {
		return nil, fmt.Errorf("credentials: %s: decoy hash: %w", name, err)
	}
	return &Credentials{hashes: c, decoy: decoy}, nil
}
