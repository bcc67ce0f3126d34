package capture

import (
	"path"
	"sync"
)

// Filter decides which tables are captured, from include and exclude globs on "db.table".
type Filter struct {
	include, exclude []string
	mu               sync.Mutex
	cache            map[[2]string]bool
}

// NewFilter builds a filter; the system schemas are always excluded.
func NewFilter(include, exclude []string) *Filter {
	ex := append([]string{}, exclude...)
	for _, s := range SystemSchemas {
		ex = append(ex, s+".*")
	}
	return &Filter{include: include, exclude: ex, cache: map[[2]string]bool{}}
}

// Match reports whether db.table is captured.
func (f *Filter) Match(db, table string) bool {
	key := [2]string{db, table}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.cache[key]; ok {
		return v
	}
	v := f.match(db + "." + table)
	f.cache[key] = v
	return v
}

func (f *Filter) match(name string) bool {
	for _, p := range f.exclude {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	if len(f.include) == 0 {
		return true
	}
	for _, p := range f.include {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
