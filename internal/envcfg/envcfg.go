// Package envcfg reads the services' configuration from the environment
// with go-envconfig, through a getenv function so that tests pass a map.
package envcfg

import (
	"context"
	"fmt"
	"reflect"
	"strings"

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
			return fmt.Errorf("%s: %s", key, strings.TrimPrefix(msg, f.Name+": "))
		}
	}
	return err
}
