// Package supervisor provides the restart budget that marmot applies to its
// actors and reports every failure and restart as an OpenTelemetry span.
//
// [New] returns a protoactor actor.SupervisorStrategy (a [*Strategy]) that
// restarts a failing child until it has failed more than Config.MaxRestarts
// times within Config.Window, then stops it. Every failure produces a
// "marmot.actor.failure" span (a child of the failing message's span when the
// message implements [Traced]), an optional slog record, and a synchronous
// Config.OnFailure callback made before the directive is applied.
//
// # Attaching the strategy
//
// In protoactor a failure is handled by the failing actor's supervisor, not
// by the actor itself, so the strategy must be attached above the actor it
// protects:
//
//   - For children spawned by an actor (marmot's ServerActor spawning its
//     connection actors), set it on the PARENT's props:
//
//     actor.PropsFromProducer(newServerActor,
//     actor.WithSupervisor(supervisor.New(cfg)))
//
//     Alternatively the parent actor type may itself implement
//     actor.SupervisorStrategy (for example by delegating to a *Strategy);
//     protoactor prefers that over the props' supervisor. Setting the strategy
//     with actor.WithSupervisor on the CHILD's props has no effect on the
//     child's own failures: it only governs the child's children.
//
//   - For an actor spawned from the root context (the client's ClientActor),
//     which has no parent actor, set it as a guardian on the actor's OWN
//     props: actor.WithGuardian(strategy). Without a guardian a root actor is
//     supervised by protoactor's default strategy and this package is never
//     consulted. protoactor registers one guardian per strategy value and
//     never unregisters it, so reuse one strategy value per actor system
//     rather than calling New for every spawn. Under a guardian the strategy
//     runs on the failing actor's goroutine and failures cannot be escalated
//     (an Escalate directive is applied as Stop).
package supervisor
