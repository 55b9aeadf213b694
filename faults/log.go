package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"

	"github.com/rs/zerolog"
)

// zerologTo is a zerolog logger (Toxiproxy's) writing to logger at Debug
// level: Toxiproxy warns of every connection that ends by a close, which is
// how every fault here ends.
func zerologTo(logger *slog.Logger) zerolog.Logger {
	if !logger.Enabled(context.Background(), slog.LevelDebug) {
		return zerolog.Nop()
	}
	return zerolog.New(slogWriter{logger}).Level(zerolog.DebugLevel)
}

// slogWriter turns zerolog's JSON lines into slog records.
type slogWriter struct{ logger *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	var ev map[string]any
	if err := json.Unmarshal(p, &ev); err != nil {
		w.logger.Debug("toxiproxy: " + string(bytes.TrimSpace(p)))
		return len(p), nil
	}
	msg, _ := ev["message"].(string)
	delete(ev, "message")
	args := make([]any, 0, 2*len(ev))
	for _, k := range slices.Sorted(maps.Keys(ev)) {
		args = append(args, "toxiproxy_"+k, ev[k])
	}
	w.logger.Debug("toxiproxy: "+msg, args...)
	return len(p), nil
}
