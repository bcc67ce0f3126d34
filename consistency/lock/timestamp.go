package lock

import "time"

// Fencing timestamps. A critical write is stamped
//
//	tsBase + seq<<seqShift + min(µs since the reference was created, maxElapsed)
//
// so every write under a later reference of a name (larger seq) is newer than every write
// under an earlier one, and writes of one holder are ordered by time for the first
// maxElapsed (about 35 minutes) of its holding; after that they tie. tsBase (2^52 µs,
// about year 2112) puts critical writes ahead of eventual writes stamped with the current
// time: once a key is written critically, eventual writes to it do not win.
const (
	seqShift   = 31
	maxElapsed = 1<<seqShift - 1
	tsBase     = int64(1) << 52
)

// Holding is a verified holder of a lock.
type Holding struct {
	Ref      Ref
	Type     Type
	Created  time.Time // when the reference was created
	Unsynced bool      // a forced release happened: repair the key before writing
}

// Timestamp is the write timestamp (µs) for a critical write made at now.
func (h Holding) Timestamp(now time.Time) int64 {
	el := now.Sub(h.Created).Microseconds()
	el = min(max(el, 0), maxElapsed)
	return tsBase + h.Ref.Seq<<seqShift + el
}
