package harness

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// fill puts s in every exported string reachable from v, making one
// element of every slice and map and a value behind every pointer, so that
// every field a Result can carry holds it.
func fill(v reflect.Value, s string, depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.CanSet() {
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem(), s, depth+1)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), s, depth+1)
			}
		}
	case reflect.Slice:
		if v.CanSet() && v.Type().Elem().Kind() != reflect.Uint8 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			fill(v.Index(0), s, depth+1)
		}
	case reflect.Map:
		if v.CanSet() {
			v.Set(reflect.MakeMap(v.Type()))
			k := reflect.New(v.Type().Key()).Elem()
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, s, depth+1)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString("x " + s + " y")
		}
	}
}

// TestRedactResultReachesEveryField: a token in any string of a Result
// (failures, the offer, the client's subprotocol, frames, the backend's
// view, a field added later) is gone after redactResult.
func TestRedactResultReachesEveryField(t *testing.T) {
	token := execproto.BearerProtocol("CANARY")
	enc := strings.TrimPrefix(token, execproto.BearerProtocolPrefix)
	var res Result
	fill(reflect.ValueOf(&res).Elem(), token, 0)
	before, err := json.Marshal(res)
	require.NoError(t, err)
	require.Greater(t, strings.Count(string(before), enc), 20, "fill reached the fields")
	redactResult(&res, nil)
	after, err := json.Marshal(res)
	require.NoError(t, err)
	assert.NotContains(t, string(after), enc)
	want, err := json.Marshal("x " + execproto.RedactedBearer + " y")
	require.NoError(t, err)
	assert.Equal(t, strings.Count(string(before), enc), strings.Count(string(after), strings.Trim(string(want), `"`)), "every one, and only the token, replaced")
}
