// Package authtest holds the tests that run the sender-authentication
// plugins (spf, dmarc, authres) together through the executor, the way the
// host runs them, against the loopback test DNS (tools/testenv), and the
// benchmark of that part of the authentication stage. The plugins never
// import each other; only these tests put them side by side.
package authtest
