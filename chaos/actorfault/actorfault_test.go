package actorfault_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/actorfault"
	"github.com/marmotws/marmot/supervisor"
)

// The 2nd message of one connection panics: the request gets an error
// reply, OnError says it was injected, the actor restarts on the same
// socket and the 3rd message is handled.
func TestPanicNth(t *testing.T) {
	inj := actorfault.New(actorfault.Options{Logger: logger()})
	r := newRig(t, inj, marmot.ServerConfig{})
	id, err := inj.Add(actorfault.Rule{Actors: actorfault.Connection(r.id), Skip: 1, Times: 1, Fault: actorfault.Panic})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.request(t, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = r.request(t, "b")
	var re *marmot.RemoteError
	if !errors.As(err, &re) || re.Code != 500 {
		t.Fatalf("request b: %v, want a 500 error reply", err)
	}
	if got, err := r.request(t, "c"); err != nil || string(got) != "c" {
		t.Fatalf("request c after the restart: %q, %v", got, err)
	}
	if a, c := r.seen.next(t), r.seen.next(t); a != "a" || c != "c" {
		t.Fatalf("handler saw %q, %q; want a, c", a, c)
	}
	select {
	case err := <-r.errs:
		if !errors.Is(err, actorfault.ErrInjected) || !errors.Is(err, marmot.ErrHandlerPanic) {
			t.Fatalf("OnError: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("no OnError")
	}
	if n := inj.Fired(id); n != 1 {
		t.Fatalf("Fired = %d, want 1", n)
	}
	if got := inj.Counts().Panics; got != 1 {
		t.Fatalf("Counts().Panics = %d", got)
	}
	if !r.client.Connected() {
		t.Fatal("the panic dropped the connection")
	}
}

// Drop loses exactly the picked message; Duplicate hands the handler one
// message twice, and a second reply to it is refused.
func TestDropAndDuplicate(t *testing.T) {
	inj := actorfault.New(actorfault.Options{})
	dups := make(chan error, 4)
	var r *rig
	r = newRig(t, inj, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
		r.seen <- m.Name
		if m.IsRequest() {
			dups <- m.Reply(m.Payload)
		}
	}}})
	if _, err := inj.Add(actorfault.Rule{Match: actorfault.Named("lost"), Fault: actorfault.Drop}); err != nil {
		t.Fatal(err)
	}
	if _, err := inj.Add(actorfault.Rule{Match: actorfault.Named("twice"), Times: 1, Fault: actorfault.Duplicate}); err != nil {
		t.Fatal(err)
	}
	if err := r.client.SendCommand("lost", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.client.SendCommand("kept", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := r.request(t, "twice"); err != nil || string(got) != "twice" {
		t.Fatalf("request twice: %q, %v", got, err)
	}
	for _, want := range []string{"kept", "twice", "twice"} {
		if got := r.seen.next(t); got != want {
			t.Fatalf("handler saw %q, want %q", got, want)
		}
	}
	if err := <-dups; err != nil {
		t.Fatalf("first reply: %v", err)
	}
	if err := <-dups; !errors.Is(err, marmot.ErrAlreadyReplied) {
		t.Fatalf("second reply: %v, want ErrAlreadyReplied", err)
	}
	// Once the rule has fired, the same name passes once.
	if _, err := r.request(t, "twice"); err != nil {
		t.Fatal(err)
	}
	if got := r.seen.next(t); got != "twice" {
		t.Fatalf("handler saw %q", got)
	}
	if c := inj.Counts(); c.Drops != 1 || c.Duplicates != 1 {
		t.Fatalf("counts %+v", c)
	}
}

// Delay and Stall hold the actor and keep the order; removing a stalling
// rule lets the message through.
func TestDelayAndStall(t *testing.T) {
	inj := actorfault.New(actorfault.Options{})
	r := newRig(t, inj, marmot.ServerConfig{})
	const d = 50 * time.Millisecond
	if _, err := inj.Add(actorfault.Rule{Match: actorfault.Named("slow"), Fault: actorfault.Delay, Delay: d}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = r.client.SendCommand("slow", nil)
	_ = r.client.SendCommand("after", nil)
	if a, b := r.seen.next(t), r.seen.next(t); a != "slow" || b != "after" {
		t.Fatalf("order %q, %q", a, b)
	}
	if e := time.Since(start); e < d {
		t.Fatalf("delayed message handled after %v, before its delay %v", e, d)
	}

	release := make(chan struct{})
	if _, err := inj.Add(actorfault.Rule{Match: actorfault.Named("hang"), Fault: actorfault.Stall, Release: release}); err != nil {
		t.Fatal(err)
	}
	_ = r.client.SendCommand("hang", nil)
	_ = r.client.SendCommand("behind", nil)
	deadline := time.Now().Add(guard)
	for inj.Counts().Stalls == 0 { // the stall has begun: an event, polled
		if time.Now().After(deadline) {
			t.Fatal("no stall")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case n := <-r.seen:
		t.Fatalf("handler ran %q during the stall", n)
	default:
	}
	close(release)
	if a, b := r.seen.next(t), r.seen.next(t); a != "hang" || b != "behind" {
		t.Fatalf("order after the stall %q, %q", a, b)
	}

	// A stall without Release ends when its rule goes.
	id, _ := inj.Add(actorfault.Rule{Match: actorfault.Named("hang2"), Fault: actorfault.Stall})
	_ = r.client.SendCommand("hang2", nil)
	for inj.Counts().Stalls == 1 {
		if time.Now().After(deadline) {
			t.Fatal("no second stall")
		}
		time.Sleep(time.Millisecond)
	}
	if !inj.Remove(id) {
		t.Fatal("Remove found no rule")
	}
	if got := r.seen.next(t); got != "hang2" {
		t.Fatalf("handler saw %q", got)
	}
}

func TestBadRules(t *testing.T) {
	inj := actorfault.New(actorfault.Options{})
	for _, r := range []actorfault.Rule{
		{},
		{Fault: actorfault.Delay},
		{Fault: actorfault.Drop, Skip: -1},
		{Fault: actorfault.Kind(99)},
	} {
		if _, err := inj.Add(r); !errors.Is(err, actorfault.ErrBadRule) {
			t.Errorf("Add(%+v) = %v, want ErrBadRule", r, err)
		}
	}
}

// One trace holds the test's span, the fault's span with its chaos.fault
// event, and the supervisor's failure span with its restart, in this
// order of parentage; a Crash does the same without a rule.
func TestFaultTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	inj := actorfault.New(actorfault.Options{TracerProvider: tp})
	r := newRig(t, inj, marmot.ServerConfig{TracerProvider: tp})

	ctx, root := tp.Tracer("test").Start(context.Background(), "test")
	if _, err := inj.Add(actorfault.Rule{Actors: actorfault.Connection(r.id), Match: actorfault.Named("boom"), Times: 1,
		Fault: actorfault.Panic, Context: ctx}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.request(t, "boom"); err == nil {
		t.Fatal("the injected panic was answered as a success")
	}
	<-r.errs
	info, err := r.srv.Client(r.id)
	if err != nil {
		t.Fatal(err)
	}
	inj.Crash(r.srv.ActorSystem(), info.PID)
	<-r.errs
	root.End()
	if _, err := r.request(t, "alive"); err != nil {
		t.Fatalf("after two restarts: %v", err)
	}

	var faults, failures []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "chaos.actor":
			faults = append(faults, s)
		case supervisor.SpanName:
			failures = append(failures, s)
		}
	}
	if len(faults) != 2 || len(failures) != 2 {
		t.Fatalf("%d fault spans and %d failure spans, want 2 and 2", len(faults), len(failures))
	}
	for k, f := range faults {
		if len(f.Events()) != 1 || f.Events()[0].Name != "chaos.fault" {
			t.Fatalf("fault span events %v", f.Events())
		}
		attrs := attribute.NewSet(f.Attributes()...)
		if v, _ := attrs.Value("chaos.fault"); v.AsString() != "panic" {
			t.Fatalf("chaos.fault = %v", v)
		}
		if v, _ := attrs.Value("marmot.client.id"); v.AsInt64() != int64(r.id) {
			t.Fatalf("marmot.client.id = %v", v)
		}
		fail := failures[k]
		if fail.Parent().SpanID() != f.SpanContext().SpanID() || fail.SpanContext().TraceID() != f.SpanContext().TraceID() {
			t.Fatalf("failure span %d is not the fault span's child", k)
		}
		if ev := fail.Events(); len(ev) == 0 || ev[len(ev)-1].Name != supervisor.EventRestart {
			t.Fatalf("failure span events %v, want a restart", ev)
		}
	}
	if faults[0].Parent().SpanID() != root.SpanContext().SpanID() {
		t.Fatal("the rule's fault span is not a child of the rule's Context")
	}
}

// Rules pick room actors by room and operation, and client actors: a
// delayed publish still reaches the member, in order; a dropped push never
// reaches the client's handler.
func TestRoomAndClientActors(t *testing.T) {
	inj := actorfault.New(actorfault.Options{})
	r := newRig(t, inj, marmot.ServerConfig{})
	ctx := ctxGuard(t)

	got := make(chan string, 16)
	cinj := actorfault.New(actorfault.Options{})
	t.Cleanup(cinj.Close)
	c, err := marmot.NewClient(marmot.ClientConfig{URL: r.srv.URL(), Subprotocol: "marmot.v1", Logger: logger(),
		ActorMiddleware: []actor.ReceiverMiddleware{cinj.Middleware()},
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) {
			if m.Room != "" {
				got <- m.Room + ":" + string(m.Payload)
			} else {
				got <- m.Name
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if _, err := inj.Add(actorfault.Rule{Actors: actorfault.Room("lobby"), Match: actorfault.Op("publish"), Times: 1,
		Fault: actorfault.Delay, Delay: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"one", "two"} {
		if _, err := r.srv.Publish("lobby", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"lobby:one", "lobby:two"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-time.After(guard):
			t.Fatal("no room message")
		}
	}
	if n := inj.Counts().Delays; n != 1 {
		t.Fatalf("%d delays", n)
	}

	if _, err := cinj.Add(actorfault.Rule{Actors: actorfault.Client(), Match: actorfault.Named("news"), Times: 1, Fault: actorfault.Drop}); err != nil {
		t.Fatal(err)
	}
	var id marmot.ClientID
	for _, ci := range r.srv.Clients() {
		id = max(id, ci.ID) // the second client
	}
	_ = r.srv.SendCommandToClient(id, "news", nil)
	_ = r.srv.SendCommandToClient(id, "weather", nil)
	select {
	case g := <-got:
		if g != "weather" {
			t.Fatalf("client handler saw %q first; the dropped push came through", g)
		}
	case <-time.After(guard):
		t.Fatal("no push")
	}
	if n := cinj.Counts().Drops; n != 1 {
		t.Fatalf("%d drops", n)
	}
}

// Stop ends a connection actor: its connection closes with 1001 and the
// stop is a fault span.
func TestStop(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	inj := actorfault.New(actorfault.Options{TracerProvider: tp})
	gone := make(chan *marmot.CloseError, 1)
	r := newRig(t, inj, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientDisconnected: func(_ marmot.ClientInfo, reason *marmot.CloseError) { gone <- reason },
	}})
	info, err := r.srv.Client(r.id)
	if err != nil {
		t.Fatal(err)
	}
	inj.Stop(context.Background(), r.srv.ActorSystem(), info.PID)
	select {
	case reason := <-gone:
		if reason.Code != 1001 {
			t.Fatalf("closed with %d, want 1001", reason.Code)
		}
	case <-time.After(guard):
		t.Fatal("the connection did not end")
	}
	if inj.Counts().Stops != 1 {
		t.Fatalf("counts %+v", inj.Counts())
	}
	spans := rec.Ended()
	if len(spans) == 0 || spans[0].Name() != "chaos.actor" || len(spans[0].Events()) != 1 {
		t.Fatalf("no stop span: %v", spans)
	}
	ev := attribute.NewSet(spans[0].Events()[0].Attributes...)
	if v, _ := ev.Value("chaos.fault"); v.AsString() != "stop" {
		t.Fatalf("chaos.fault = %v", v)
	}
}

// A room actor that panics carries on with its members, epoch and
// offsets: the member still gets what is published next.
func TestRoomPanicKeepsMembers(t *testing.T) {
	inj := actorfault.New(actorfault.Options{})
	r := newRig(t, inj, marmot.ServerConfig{RoomHistory: marmot.HistoryConfig{Size: 10}})
	got := make(chan *marmot.Message, 4)
	member, err := marmot.NewClient(marmot.ClientConfig{URL: r.srv.URL(), Subprotocol: "marmot.v1", Logger: logger(),
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- m }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = member.Close(context.Background()) })
	ctx := ctxGuard(t)
	if err := member.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := member.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.srv.Publish("lobby", []byte("before")); err != nil {
		t.Fatal(err)
	}
	before := <-got
	// The rig's client joins too, and the room panics on that join.
	if _, err := inj.Add(actorfault.Rule{Actors: actorfault.Room("lobby"), Match: actorfault.Op("join"), Times: 1, Fault: actorfault.Panic}); err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := r.client.Join(jctx, "lobby"); err == nil {
		t.Fatal("a join the room panicked on succeeded")
	}
	if n, err := r.srv.Publish("lobby", []byte("after")); err != nil || n != 1 {
		t.Fatalf("publish after the room's restart: %d members, %v", n, err)
	}
	select {
	case m := <-got:
		if string(m.Payload) != "after" || m.Epoch != before.Epoch || m.Offset != before.Offset+1 {
			t.Fatalf("got %q at %s/%d after %s/%d", m.Payload, m.Epoch, m.Offset, before.Epoch, before.Offset)
		}
	case <-time.After(guard):
		t.Fatal("the member lost the room")
	}
	if inj.Counts().Panics != 1 {
		t.Fatalf("counts %+v", inj.Counts())
	}
}
