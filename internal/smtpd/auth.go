// AUTH PLAIN and LOGIN against a bcrypt credentials file.

package smtpd

import (
	"bufio"
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

func (s *session) login(username, password string) error {
	if !s.be.cfg.Credentials.Check(username, password) {
		s.log.Info("auth failed", "user", username)
		return smtp.ErrAuthFailed
	}
	s.mu.Lock()
	s.authUser = username
	s.mu.Unlock()
	s.log.Info("authenticated", "user", username)
	return nil
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
type Credentials map[string][]byte

// Check reports whether password is user's. Unknown users cost a bcrypt
// comparison too, so timing does not tell them apart.
func (c Credentials) Check(user, password string) bool {
	hash, ok := c[user]
	if !ok {
		hash = dummyHash
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && ok
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.MinCost)

// LoadCredentials reads a credentials file: one "user:bcrypt-hash" per
// line (htpasswd -B format); blank lines and lines starting with # are
// ignored.
func LoadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	return ParseCredentials(path, f)
}

// ParseCredentials parses the credentials file format from r; name is used
// in errors.
func ParseCredentials(name string, r io.Reader) (Credentials, error) {
	c := Credentials{}
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
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("credentials: %s:%d: user %s: not a bcrypt hash: %w", name, n, user, err)
		}
		if _, dup := c[user]; dup {
			return nil, fmt.Errorf("credentials: %s:%d: user %s listed twice", name, n, user)
		}
		c[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("credentials: %s: %w", name, err)
	}
	return c, nil
}
