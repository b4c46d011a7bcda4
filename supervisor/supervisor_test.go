package supervisor_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/supervisor"
)

func TestRestartsUntilBudgetExhausted(t *testing.T) {
	const maxRestarts = 2

	h := start(t, supervisor.Config{MaxRestarts: maxRestarts, Window: time.Hour})

	for i := 1; i <= maxRestarts; i++ {
		o := h.fail(t, "boom")
		if o.Directive != actor.RestartDirective || o.Restarts != i || o.BudgetExhausted {
			t.Fatalf("failure %d: directive=%v restarts=%d exhausted=%v, want restart %d false",
				i, o.Directive, o.Restarts, o.BudgetExhausted, i)
		}
		if !o.Child.Equal(h.child) || o.Reason != "boom" {
			t.Fatalf("failure %d: child=%v reason=%v", i, o.Child, o.Reason)
		}
		if _, ok := o.Message.(boom); !ok {
			t.Fatalf("failure %d: message = %#v, want boom", i, o.Message)
		}
		if o.restartingBefore != int64(i-1) {
			t.Fatalf("failure %d: OnFailure ran after the restart (child saw %d restarts)", i, o.restartingBefore)
		}
		if err := o.Err(); !errors.Is(err, supervisor.ErrActorFailed) || errors.Is(err, supervisor.ErrRestartBudgetExhausted) {
			t.Fatalf("failure %d: Err() = %v", i, err)
		}

		h.probe.expect(t, evRestarting, evStarted)

		// The state shared by the incarnations survives the restart.
		if got := h.pingPong(t); got != int64(i) {
			t.Fatalf("pings = %d, want %d", got, i)
		}
	}

	o := h.fail(t, "boom")
	if o.Directive != actor.StopDirective || o.Restarts != maxRestarts+1 || !o.BudgetExhausted {
		t.Fatalf("last failure: directive=%v restarts=%d exhausted=%v, want stop %d true",
			o.Directive, o.Restarts, o.BudgetExhausted, maxRestarts+1)
	}
	if o.stoppedBefore {
		t.Fatal("OnFailure ran after the child stopped")
	}

	err := o.Err()
	if !errors.Is(err, supervisor.ErrRestartBudgetExhausted) || !errors.Is(err, supervisor.ErrActorFailed) {
		t.Fatalf("Err() = %v, want ErrRestartBudgetExhausted and ErrActorFailed", err)
	}

	h.probe.expect(t, evStopping, evStopped)
	h.expectTerminated(t)
}

func TestZeroConfigDefaults(t *testing.T) {
	h := start(t, supervisor.Config{})

	for i := 1; i <= supervisor.DefaultMaxRestarts; i++ {
		if o := h.fail(t, "boom"); o.Directive != actor.RestartDirective || o.Restarts != i {
			t.Fatalf("failure %d: directive=%v restarts=%d", i, o.Directive, o.Restarts)
		}

		h.probe.expect(t, evRestarting, evStarted)
	}

	if o := h.fail(t, "boom"); o.Directive != actor.StopDirective || !o.BudgetExhausted {
		t.Fatalf("failure %d: directive=%v exhausted=%v", supervisor.DefaultMaxRestarts+1, o.Directive, o.BudgetExhausted)
	}

	h.expectTerminated(t)
}

func TestZeroValueStrategy(t *testing.T) {
	system := newSystem(t)
	pr := newProbe()
	par := newParent(pr.props())
	system.Root.Spawn(par.props(&supervisor.Strategy{}))

	child := recv(t, par.spawned, "child spawned")
	pr.expect(t, evStarted)

	for range supervisor.DefaultMaxRestarts {
		system.Root.Send(child, boom{reason: "boom"})
		pr.expect(t, evRestarting, evStarted)
	}

	system.Root.Send(child, boom{reason: "boom"})
	pr.expect(t, evStopping, evStopped)
	recv(t, par.terminated, "Terminated")
}

func TestWindowForgetsOldFailures(t *testing.T) {
	const window = 50 * time.Millisecond

	h := start(t, supervisor.Config{MaxRestarts: 1, Window: window})

	// With a budget of one restart, every failure but the first would stop
	// the child if earlier failures were still counted.
	for i := 1; i <= 3; i++ {
		o := h.fail(t, "boom")
		if o.Directive != actor.RestartDirective || o.Restarts != 1 {
			t.Fatalf("failure %d: directive=%v restarts=%d, want restart 1", i, o.Directive, o.Restarts)
		}

		h.probe.expect(t, evRestarting, evStarted)

		// RestartStatistics reads the wall clock: let the failure age out of
		// the window (by twice its length, after it was observed).
		time.Sleep(2 * window)
	}
}

func TestNegativeMaxRestartsStopsOnFirstFailure(t *testing.T) {
	h := start(t, supervisor.Config{MaxRestarts: -1})

	o := h.fail(t, "boom")
	if o.Directive != actor.StopDirective || !o.BudgetExhausted || o.Restarts != 1 {
		t.Fatalf("directive=%v exhausted=%v restarts=%d, want stop true 1", o.Directive, o.BudgetExhausted, o.Restarts)
	}
	if !errors.Is(o.Err(), supervisor.ErrRestartBudgetExhausted) {
		t.Fatalf("Err() = %v", o.Err())
	}

	h.probe.expect(t, evStopping, evStopped)
	h.expectTerminated(t)
}

func TestDecider(t *testing.T) {
	errFatal := errors.New("fatal")
	decider := func(reason any) actor.Directive {
		switch {
		case reason == "transient":
			return actor.ResumeDirective
		case reason == errFatal:
			return actor.StopDirective
		default:
			return actor.RestartDirective
		}
	}

	t.Run("resume", func(t *testing.T) {
		h := start(t, supervisor.Config{Decider: decider})
		h.pingPong(t)

		o := h.fail(t, "transient")
		if o.Directive != actor.ResumeDirective || o.Restarts != 1 || o.BudgetExhausted {
			t.Fatalf("directive=%v restarts=%d exhausted=%v", o.Directive, o.Restarts, o.BudgetExhausted)
		}

		// Resumed, not restarted: the next event is the pong.
		if got := h.pingPong(t); got != 2 {
			t.Fatalf("pings = %d, want 2", got)
		}
		if n := h.probe.restarting.Load(); n != 0 {
			t.Fatalf("child restarted %d times", n)
		}
	})

	t.Run("stop", func(t *testing.T) {
		h := start(t, supervisor.Config{Decider: decider})

		o := h.fail(t, errFatal)
		if o.Directive != actor.StopDirective || o.BudgetExhausted {
			t.Fatalf("directive=%v exhausted=%v", o.Directive, o.BudgetExhausted)
		}
		if err := o.Err(); !errors.Is(err, errFatal) || errors.Is(err, supervisor.ErrRestartBudgetExhausted) {
			t.Fatalf("Err() = %v", err)
		}

		h.probe.expect(t, evStopping, evStopped)
		h.expectTerminated(t)
	})

	t.Run("panicking decider stops", func(t *testing.T) {
		h := start(t, supervisor.Config{Decider: func(any) actor.Directive { panic("decider bug") }})

		if o := h.fail(t, "boom"); o.Directive != actor.StopDirective || o.BudgetExhausted {
			t.Fatalf("directive=%v exhausted=%v", o.Directive, o.BudgetExhausted)
		}

		h.expectTerminated(t)
	})

	t.Run("unknown directive stops", func(t *testing.T) {
		h := start(t, supervisor.Config{Decider: func(any) actor.Directive { return 42 }})

		if o := h.fail(t, "boom"); o.Directive != actor.StopDirective {
			t.Fatalf("directive=%v", o.Directive)
		}

		h.expectTerminated(t)
	})
}

func TestEscalateToGrandparent(t *testing.T) {
	system := newSystem(t)

	parentFailures := make(chan supervisor.Failure, 8)
	grandFailures := make(chan supervisor.Failure, 8)

	escalating := supervisor.New(supervisor.Config{
		Decider:   func(any) actor.Directive { return actor.EscalateDirective },
		OnFailure: func(f supervisor.Failure) { parentFailures <- f },
	})
	restarting := supervisor.New(supervisor.Config{
		OnFailure: func(f supervisor.Failure) { grandFailures <- f },
	})

	pr := newProbe()
	par := newParent(pr.props())
	grand := newParent(par.props(escalating))
	system.Root.Spawn(grand.props(restarting))

	parentPID := recv(t, grand.spawned, "parent spawned")
	child := recv(t, par.spawned, "child spawned")
	pr.expect(t, evStarted)

	system.Root.Send(child, boom{reason: "boom"})

	f := recv(t, parentFailures, "parent OnFailure")
	if f.Directive != actor.EscalateDirective || !f.Child.Equal(child) || f.Restarts != 1 {
		t.Fatalf("parent saw directive=%v child=%v restarts=%d", f.Directive, f.Child, f.Restarts)
	}

	g := recv(t, grandFailures, "grandparent OnFailure")
	if g.Directive != actor.RestartDirective || !g.Child.Equal(parentPID) || g.Reason != "boom" {
		t.Fatalf("grandparent saw directive=%v child=%v reason=%v", g.Directive, g.Child, g.Reason)
	}
	if _, ok := g.Message.(boom); !ok {
		t.Fatalf("grandparent saw message %#v, want boom", g.Message)
	}

	// Restarting the parent stops its child; the new parent spawns a new one.
	pr.expect(t, evStopping, evStopped, evStarted)

	if who := recv(t, par.terminated, "Terminated"); !who.Equal(child) {
		t.Fatalf("terminated %v, want %v", who, child)
	}

	recv(t, par.spawned, "new child spawned")
}

func TestGuardian(t *testing.T) {
	t.Run("restart budget", func(t *testing.T) {
		system := newSystem(t)
		fails := make(chan supervisor.Failure, 8)
		strategy := supervisor.New(supervisor.Config{
			MaxRestarts: 1,
			Window:      time.Hour,
			OnFailure:   func(f supervisor.Failure) { fails <- f },
		})

		pr := newProbe()
		child := system.Root.Spawn(actor.PropsFromProducer(
			func() actor.Actor { return &testChild{p: pr} },
			actor.WithGuardian(strategy)))
		pr.expect(t, evStarted)

		system.Root.Send(child, boom{reason: "boom"})

		if f := recv(t, fails, "OnFailure"); f.Directive != actor.RestartDirective || f.Restarts != 1 {
			t.Fatalf("directive=%v restarts=%d", f.Directive, f.Restarts)
		}

		pr.expect(t, evRestarting, evStarted)

		system.Root.Send(child, boom{reason: "boom"})

		if f := recv(t, fails, "OnFailure"); f.Directive != actor.StopDirective || !f.BudgetExhausted {
			t.Fatalf("directive=%v exhausted=%v", f.Directive, f.BudgetExhausted)
		}

		pr.expect(t, evStopping, evStopped)
	})

	t.Run("escalate becomes stop", func(t *testing.T) {
		system := newSystem(t)
		fails := make(chan supervisor.Failure, 8)
		strategy := supervisor.New(supervisor.Config{
			Decider:   func(any) actor.Directive { return actor.EscalateDirective },
			OnFailure: func(f supervisor.Failure) { fails <- f },
		})

		pr := newProbe()
		child := system.Root.Spawn(actor.PropsFromProducer(
			func() actor.Actor { return &testChild{p: pr} },
			actor.WithGuardian(strategy)))
		pr.expect(t, evStarted)

		system.Root.Send(child, boom{reason: "boom"})

		if f := recv(t, fails, "OnFailure"); f.Directive != actor.StopDirective || f.BudgetExhausted {
			t.Fatalf("directive=%v exhausted=%v", f.Directive, f.BudgetExhausted)
		}

		pr.expect(t, evStopping, evStopped)
	})
}

type codedError struct{ code int }

func (e *codedError) Error() string { return fmt.Sprintf("code %d", e.code) }

func TestPanicWithError(t *testing.T) {
	errBase := errors.New("socket broken")
	reason := fmt.Errorf("write: %w", errBase)

	h := start(t, supervisor.Config{MaxRestarts: -1})

	o := h.fail(t, reason)

	err := o.Err()
	if !errors.Is(err, errBase) || !errors.Is(err, supervisor.ErrActorFailed) || !errors.Is(err, supervisor.ErrRestartBudgetExhausted) {
		t.Fatalf("Err() = %v, want it to match the reason, ErrActorFailed and ErrRestartBudgetExhausted", err)
	}
	if !strings.Contains(err.Error(), "write: socket broken") {
		t.Fatalf("Err() = %q, want the reason in it", err)
	}
}

func TestFailureErr(t *testing.T) {
	coded := &codedError{code: 7}

	tests := []struct {
		name      string
		failure   supervisor.Failure
		exhausted bool
		target    error
		text      string
	}{
		{name: "string reason", failure: supervisor.Failure{Reason: "kaput"}, text: "kaput"},
		{name: "nil reason", failure: supervisor.Failure{}, text: "<nil>"},
		{name: "error reason", failure: supervisor.Failure{Reason: coded}, target: coded, text: "code 7"},
		{
			name:      "exhausted",
			failure:   supervisor.Failure{Reason: coded, BudgetExhausted: true, Directive: actor.StopDirective},
			exhausted: true,
			target:    coded,
			text:      "code 7",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.failure.Err()
			if !errors.Is(err, supervisor.ErrActorFailed) {
				t.Errorf("Err() = %v does not match ErrActorFailed", err)
			}
			if got := errors.Is(err, supervisor.ErrRestartBudgetExhausted); got != tt.exhausted {
				t.Errorf("errors.Is(Err(), ErrRestartBudgetExhausted) = %v, want %v", got, tt.exhausted)
			}
			if tt.target != nil {
				var ce *codedError
				if !errors.Is(err, tt.target) || !errors.As(err, &ce) || ce.code != 7 {
					t.Errorf("Err() = %v does not wrap %v", err, tt.target)
				}
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Err().Error() = %q, want it to contain %q", err, tt.text)
			}
		})
	}
}

func TestOnFailurePanicStillApplied(t *testing.T) {
	h := start(t, supervisor.Config{OnFailure: func(supervisor.Failure) { panic("callback bug") }})

	// The harness reports after the user callback; a panic there skips the
	// report, so wait for the restart itself.
	h.system.Root.Send(h.child, boom{reason: "boom"})
	h.probe.expect(t, evRestarting, evStarted)
	h.pingPong(t)
}
