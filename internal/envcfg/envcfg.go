// Package envcfg reads the services' configuration from the environment
// with go-envconfig, through a getenv function so that tests pass a map.
package envcfg

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Process fills the `env`-tagged fields of target (a pointer to a struct)
// from getenv; an empty value counts as unset. Errors name the variable
// (AGENCY_ID), not the Go field (ID), since that is what the user sets.
func Process(ctx context.Context, getenv func(string) string, target any) error {
	err := envconfig.ProcessWith(ctx, &envconfig.Config{
		Target:   target,
		Lookuper: envconfig.LookuperFunc(func(k string) (string, bool) { v := getenv(k); return v, v != "" }),
	})
	if err == nil {
		return nil
	}
	msg := err.Error()
	t := reflect.TypeOf(target).Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key != "" && strings.HasPrefix(msg, f.Name+": ") {
			if want := wantOf(f.Type, err); want != "" {
				return fmt.Errorf("%s=%q: %s", key, getenv(key), want)
			}
			return fmt.Errorf("%s: %s", key, strings.TrimPrefix(msg, f.Name+": "))
		}
	}
	return err
}

// wantOf says what a value of type t looks like, for a value that did not
// parse (err), instead of Go's parser's words (strconv.ParseInt: …).
func wantOf(t reflect.Type, err error) string {
	var num *strconv.NumError
	isNum := errors.As(err, &num)
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "want a duration such as 500ms, 5s, 2m or 1h30m"
	case isNum && errors.Is(num.Err, strconv.ErrRange):
		return "out of range"
	case isNum && t.Kind() == reflect.Bool:
		return "want true or false"
	case isNum && t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "want a whole number"
	case isNum:
		return "want a number"
	}
	return ""
}
