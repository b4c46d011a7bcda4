package jwtauth_test

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marmotws/marmot/jwtauth"
)

// BenchmarkAuthenticateToken is the cost of verifying one HS256 token,
// paid once per connection.
func BenchmarkAuthenticateToken(b *testing.B) {
	a, err := jwtauth.New(jwtauth.Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	tok := sign(b, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u", "exp": hour()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.AuthenticateToken(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}
