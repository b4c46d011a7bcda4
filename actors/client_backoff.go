package actors

// The client's reconnect schedule: fixed or exponential backoff with
// jitter, and when a connection counts as healthy again.

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sethvargo/go-retry"
)

// healthyAfter is how long a connection must last for the next reconnect
// to start over from the first attempt and the first delay.
func (a *ClientActor) healthyAfter() time.Duration {
	cfg := &a.c.cfg
	if cfg.HealthyAfter > 0 {
		return cfg.HealthyAfter
	}
	return max(DefaultHealthyAfter, cfg.ReconnectInterval)
}

func (a *ClientActor) newBackoff() retry.Backoff {
	cfg := a.c.cfg
	interval := cfg.ReconnectInterval
	if interval <= 0 {
		interval = time.Second
	}
	var b retry.Backoff
	if cfg.ReconnectStrategy == ReconnectExponential {
		b = retry.NewExponential(interval)
		if cfg.MaxReconnectInterval > 0 {
			b = retry.WithCappedDuration(cfg.MaxReconnectInterval, b)
		}
	} else {
		b = retry.NewConstant(interval)
	}
	if f := cfg.ReconnectJitter; f > 0 {
		// go-retry's WithJitterPercent takes whole percents (0.29 would
		// become ±28 %, 0.005 nothing); spread by the exact fraction.
		next := b
		b = retry.BackoffFunc(func() (time.Duration, bool) {
			d, stop := next.Next()
			if stop {
				return 0, true
			}
			return time.Duration(float64(d) * (1 + f*(2*rand.Float64()-1))), false
		})
	}
	return b
}

func (a *ClientActor) scheduleRetry(ctx actor.Context) {
	c := a.c
	k := &c.core
	if c.cfg.MaxReconnectAttempts > 0 && k.attempt >= c.cfg.MaxReconnectAttempts {
		err := fmt.Errorf("%w after %d attempts", ErrReconnectExhausted, k.attempt)
		if k.lastErr != nil {
			err = fmt.Errorf("%w (last: %w)", err, k.lastErr)
		}
		a.giveUp(err)
		return
	}
	if k.backoff == nil {
		k.backoff = a.newBackoff()
	}
	delay, _ := k.backoff.Next()
	k.attempt++
	k.delay = delay
	if f := c.cfg.Events.OnReconnecting; f != nil {
		attempt := k.attempt
		c.safeCall("OnReconnecting", func() { f(attempt, delay) })
	}
	episode := k.episode
	self := ctx.Self()
	k.timer = time.AfterFunc(delay, func() { c.sys.Root.Send(self, &retryTick{episode: episode}) })
}
