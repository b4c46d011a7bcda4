package jwtauth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/jwtauth"
)

// FuzzAuthenticateToken feeds the token decoder what a client may send:
// it must never panic, and refuses with ErrUnauthorized whatever is not a
// token signed with the secret.
func FuzzAuthenticateToken(f *testing.F) {
	a, err := jwtauth.New(jwtauth.Config{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	good := sign(f, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u"})
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.AuthenticateToken(context.Background(), token)
		if err != nil {
			if !errors.Is(err, marmot.ErrUnauthorized) {
				t.Fatalf("error %v does not wrap ErrUnauthorized", err)
			}
			return
		}
		if id == nil || id.UserID == "" {
			t.Fatalf("accepted %q without a user", token)
		}
	})
}
