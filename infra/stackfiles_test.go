package main

import (
	"sort"
	"testing"
)

func TestDumpTypes(t *testing.T) {
	for _, name := range examples {
		s := deployExample(t, name)
		count := map[string]int{}
		for _, r := range s.All {
			count[r.Type]++
		}
		var types []string
		for k := range count {
			types = append(types, k)
		}
		sort.Strings(types)
		for _, k := range types {
			t.Logf("%s %s %d", name, k, count[k])
		}
	}
}
