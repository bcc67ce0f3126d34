package prom

import (
	"encoding/json"
	"time"
)

// record is the data of a resource's znode: its owner, or with Free its last owner.
type record struct {
	Site     string `json:"site,omitempty"`
	Instance string `json:"instance,omitempty"`
	Fence    int64  `json:"fence,omitempty"`
	SinceMS  int64  `json:"since_ms,omitempty"`
	LeaseMS  int64  `json:"lease_ms,omitempty"`
	Free     bool   `json:"free,omitempty"`
}

func (r record) encode() []byte { b, _ := json.Marshal(r); return b }

// decodeRecord reads a record; an empty node is free, and a damaged one reads as owned
// by an unknown site, which waiting Managers take over once it stops changing.
func decodeRecord(b []byte) record {
	if len(b) == 0 {
		return record{Free: true}
	}
	var r record
	if json.Unmarshal(b, &r) != nil {
		return record{Site: "?", Instance: "?"}
	}
	return r
}

// ownership returns the (last) owner's ownership, zero if the record never had one.
func (r record) ownership(resource string) Ownership {
	if r.Site == "" {
		return Ownership{}
	}
	return Ownership{Resource: resource, Site: r.Site, Fence: r.Fence, Since: time.UnixMilli(r.SinceMS)}
}

// lease is the owner's lease period, def if the record does not say.
func (r record) lease(def time.Duration) time.Duration {
	if r.LeaseMS <= 0 {
		return def
	}
	return time.Duration(r.LeaseMS) * time.Millisecond
}
