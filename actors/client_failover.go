package actors

import (
	"errors"
	"fmt"
	"strings"
)

// Client failover: a client given several URLs (ClientConfig.URL and then
// FailoverURLs) dials one at a time, in order and round again. It stays on
// the URL that works; a failed attempt or a lost connection moves it to the
// next one, so that the next attempt (after the usual backoff) goes to
// another server. Attempts are counted over all URLs together: the backoff
// and MaxReconnectAttempts do not start over per URL.
//
// Only the ClientActor moves the index; other goroutines read the URL it
// points at through an atomic (Client.URL).

// endpoints returns every URL the client may dial, URL first.
func (c *ClientConfig) endpoints() []string {
	return append([]string{c.URL}, c.FailoverURLs...)
}

// url returns the URL the next (or current) attempt dials.
func (c *Client) url() string { return c.urls[int(c.urlAt.Load())] }

// URL returns the URL of the current connection, or the one the next
// attempt dials.
func (c *Client) URL() string { return c.url() }

// endpointsText names every URL, for errors about them all.
func (c *Client) endpointsText() string { return strings.Join(c.urls, " or ") }

// failover moves to the next URL, round again after the last.
func (c *Client) failover() {
	if len(c.urls) > 1 {
		c.urlAt.Store((c.urlAt.Load() + 1) % int32(len(c.urls)))
	}
}

// firstPass reports whether a Connect without RetryFirstConnect still has a
// URL it has not tried: it tries each once, at once, before failing.
func (k *clientCore) firstPass(urls int) bool { return len(k.passErrs) < urls }

// passError is the error of a Connect whose every URL failed: each URL's
// error, joined, so that errors.Is finds any of them.
func passError(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("marmot: all %d URLs failed: %w", len(errs), errors.Join(errs...))
}
