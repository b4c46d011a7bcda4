package cluster

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// protoactor's remote dials a gRPC connection per attempt to reach a
// node (its endpoint writer's initialize) and, when the attempt fails
// (the node is down: a SIGKILLed node, before it is dropped), dials the
// next one without closing the last. Such a connection lives on for
// good: gRPC keeps reconnecting it with backoff, and once a node is back
// on that address it connects, a transport nobody uses (3 goroutines on
// the dialer, 3 more once connected, and as many on the node it reaches,
// per failed attempt; the cluster soak's nodes ended 10-14 goroutines
// over their baseline after two kills). remoteDialOptions closes the
// connection of a failed attempt from inside gRPC: the endpoint writer
// makes one stream per connection (Remoting.Receive) and is done with
// the connection when that stream fails before its first answer (the
// connect response), so closing it there is what the writer would have
// done. Once the stream has answered, the writer owns the connection and
// closes it itself when it stops.

// remoteDialOptions are the remote's gRPC dial options: protoactor's
// (insecure transport) and the interceptor.
func remoteDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(closeFailedConns),
	}
}

// closeFailedConns closes cc when its stream cannot be made, or fails
// before it has received a message.
func closeFailedConns(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		_ = cc.Close()
		return nil, err
	}
	return &handshakeStream{ClientStream: s, cc: cc}, nil
}

// handshakeStream is a stream whose connection is closed if it fails
// before its first message is received.
type handshakeStream struct {
	grpc.ClientStream
	cc       *grpc.ClientConn
	answered atomic.Bool // a message was received: the writer owns cc
}

func (s *handshakeStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && !s.answered.Load() {
		_ = s.cc.Close()
	}
	return err
}

func (s *handshakeStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == nil:
		s.answered.Store(true)
	case !s.answered.Load():
		_ = s.cc.Close()
	}
	return err
}
