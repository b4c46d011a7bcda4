package cluster

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestRemoteConnsClosedOnFailure checks the remote's dial options
// (remote_conns.go) the way protoactor's endpoint writer uses a
// connection, one stream answered first by a connect response: a
// connection whose stream cannot be made (the node is down) or fails
// before its first answer is closed, which protoactor leaves running;
// one whose stream has answered is left to its owner.
func TestRemoteConnsClosedOnFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A server whose streams answer once (answer) or fail at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(st)
		if method == "/t.T/answer" {
			if err := st.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
		}
		return errors.New("stream over")
	}))
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	// A port nobody listens on: a node that is down.
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()

	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	dial := func(addr string) *grpc.ClientConn {
		t.Helper()
		cc, err := grpc.NewClient("passthrough:///"+addr, remoteDialOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}

	t.Run("node down", func(t *testing.T) {
		cc := dial(downAddr)
		if _, err := cc.NewStream(ctx, desc, "/t.T/answer"); err == nil {
			t.Fatal("a stream to a closed port")
		}
		if s := cc.GetState(); s != connectivity.Shutdown {
			t.Errorf("connection %v after its stream could not be made; want Shutdown", s)
		}
	})
	t.Run("failed before its answer", func(t *testing.T) {
		cc := dial(ln.Addr().String())
		st, err := cc.NewStream(ctx, desc, "/t.T/fail")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.RecvMsg(&emptypb.Empty{}); err == nil {
			t.Fatal("no error from a failing stream")
		}
		if s := cc.GetState(); s != connectivity.Shutdown {
			t.Errorf("connection %v after its stream failed unanswered; want Shutdown", s)
		}
	})
	t.Run("answered", func(t *testing.T) {
		cc := dial(ln.Addr().String())
		st, err := cc.NewStream(ctx, desc, "/t.T/answer")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.RecvMsg(&emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
		if err := st.RecvMsg(&emptypb.Empty{}); err == nil {
			t.Fatal("no error at the stream's end")
		}
		if s := cc.GetState(); s == connectivity.Shutdown {
			t.Error("a connection whose stream had answered was closed: its owner closes it")
		}
	})
}
