package harness

import (
	"fmt"

	"github.com/execconform/execconform/faults"
	"github.com/execconform/execconform/scenarios"
)

// applyFaults starts the case's faults that have trigger when.
func (r *caseRun) applyFaults(when scenarios.Trigger) error {
	for i, f := range r.c.Scenario.Faults {
		if f.At != when {
			continue
		}
		link := r.legs[f.Leg]
		if link == nil {
			return &suiteError{fmt.Errorf("fault %d: no %s leg", i+1, f.Leg)}
		}
		if f.Toxic == scenarios.ToxicDown {
			link.Down()
			continue
		}
		streams := []faults.Direction{faults.Upstream, faults.Downstream}
		if f.Stream != "" {
			streams = []faults.Direction{faults.Direction(f.Stream)}
		}
		for _, st := range streams {
			t := faults.Toxic{Name: fmt.Sprintf("%s-%d-%s", f.Toxic, i, st), Type: f.Toxic, Stream: st, Attributes: f.Attributes}
			if err := link.Add(t); err != nil {
				return &suiteError{fmt.Errorf("fault %d (%s on the %s leg): %w", i+1, f.Toxic, f.Leg, err)}
			}
		}
	}
	return nil
}

// LegStats is what passed one leg's link.
type LegStats = faults.LinkStats

func (r *caseRun) closeLegs() {
	for leg, l := range r.legs {
		if l == nil {
			continue
		}
		st := l.Stats()
		r.leg(leg).Link = &st
		_ = l.Close()
	}
}
