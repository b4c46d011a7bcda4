package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// demoResult is what the demo's clients got from the server.
type demoResult struct {
	// Who is the answer to `who` once everyone has joined.
	Who string
	// Received holds, per nick, every push the client received, in order:
	// "said: NICK: TEXT" or "notice: TEXT".
	Received map[string][]string
}

// chatter is one demo client and everything the server pushed to it.
type chatter struct {
	nick   string
	client *marmot.Client

	mu   sync.Mutex
	got  []string
	poke chan struct{} // capacity 1: got has grown

	read int // entries of got the demo has looked at (demo goroutine only)
}

func newChatter(url, nick string, log *slog.Logger) (*chatter, error) {
	c := &chatter{nick: nick, poke: make(chan struct{}, 1)}
	client, err := marmot.NewClient(marmot.ClientConfig{
		URL:         url,
		Subprotocol: protocol.SubprotocolBinary,
		Logger:      log,
		ClientEvents: marmot.ClientEvents{
			// This runs on the client's actor: record and return, never
			// wait here (the demo goroutine does the waiting).
			OnHandleCommand: func(m *marmot.Message) {
				c.mu.Lock()
				c.got = append(c.got, m.Name+": "+string(m.Payload))
				c.mu.Unlock()
				select {
				case c.poke <- struct{}{}:
				default: // already poked
				}
			},
		},
	})
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

// expect waits for the client's next push and checks it is want.
func (c *chatter) expect(ctx context.Context, out io.Writer, want string) error {
	for {
		c.mu.Lock()
		n := len(c.got)
		var got string
		if c.read < n {
			got = c.got[c.read]
		}
		c.mu.Unlock()
		if c.read < n {
			c.read++
			fmt.Fprintf(out, "  %-4s <- %s\n", c.nick, got)
			if got != want {
				return fmt.Errorf("%s received %q, want %q", c.nick, got, want)
			}
			return nil
		}
		select {
		case <-c.poke:
		case <-ctx.Done():
			return fmt.Errorf("%s waiting for %q: %w", c.nick, want, ctx.Err())
		}
	}
}

func (c *chatter) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// runDemo connects three clients to url and has them chat: they join, talk,
// ask who is there, and one crashes its connection's actor and talks on.
// It checks every push as it arrives; the result, complete even on error,
// is what the clients received until they disconnected.
func runDemo(ctx context.Context, url string, out io.Writer, log *slog.Logger) (res *demoResult, err error) {
	res = &demoResult{Received: map[string][]string{}}
	var all []*chatter
	defer func() {
		// Close waits for the client's actor: after it nothing more
		// arrives, so the transcript is complete. It gets its own time, as
		// ctx may be what ended the demo.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, c := range all {
			err = errors.Join(err, c.client.Close(closeCtx))
			res.Received[c.nick] = c.received()
		}
	}()

	for _, nick := range []string{"ada", "bob", "cy"} {
		c, err := newChatter(url, nick, log)
		if err != nil {
			return res, err
		}
		all = append(all, c)
		if err := c.client.Connect(ctx); err != nil {
			return res, err
		}
		if err := c.client.SendCommand("nick", []byte(nick)); err != nil {
			return res, err
		}
		// The member handles nick before who, and tells the room in that
		// order, so the answer includes us: when it comes, we have joined
		// and will hear everything said from now on.
		members, err := c.client.Request(ctx, "who", nil)
		if err != nil {
			return res, err
		}
		fmt.Fprintf(out, "%s joined; who: %s\n", nick, members)
	}
	ada, bob, cy := all[0], all[1], all[2]

	say := func(from *chatter, text string) error {
		fmt.Fprintf(out, "%s says %q\n", from.nick, text)
		return from.client.SendCommand("say", []byte(text))
	}
	// Everyone hears every line, the sender too. Each line is awaited at
	// every client before the next is said, so the order is the script's.
	heard := func(from *chatter, text string) error {
		for _, c := range all {
			if err := c.expect(ctx, out, "said: "+from.nick+": "+text); err != nil {
				return err
			}
		}
		return nil
	}
	for _, line := range []struct {
		from *chatter
		text string
	}{{ada, "hello, everyone"}, {bob, "hi ada"}, {cy, "hey both"}} {
		if err := say(line.from, line.text); err != nil {
			return res, err
		}
		if err := heard(line.from, line.text); err != nil {
			return res, err
		}
	}

	members, err := cy.client.Request(ctx, "who", nil)
	if err != nil {
		return res, err
	}
	res.Who = string(members)
	fmt.Fprintf(out, "cy asks who: %s\n", members)

	// bob's member panics and a fresh one takes over the same socket. bob
	// talks on at once: the say waits in the mailbox until the fresh
	// member has recovered its nick from the room, and the welcome-back
	// notice it pushes is queued before the room's echo of the say.
	fmt.Fprintln(out, "bob sends crash")
	if err := bob.client.SendCommand("crash", nil); err != nil {
		return res, err
	}
	if err := say(bob, "back again"); err != nil {
		return res, err
	}
	if err := bob.expect(ctx, out, "notice: restarted (1): welcome back, bob"); err != nil {
		return res, err
	}
	return res, heard(bob, "back again")
}
