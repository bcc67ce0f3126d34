package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"

	"github.com/music-coord/music/recipes/cas"
	"github.com/music-coord/music/recipes/store"
)

// jsonConditional is ONAP's JsonConditional (the spelling "casscade" is ONAP's).
type jsonConditional struct {
	PrimaryKey        string                       `json:"primaryKey"`
	PrimaryKeyValue   any                          `json:"primaryKeyValue"`
	CascadeColumnName string                       `json:"casscadeColumnName"`
	TableValues       map[string]json.RawMessage   `json:"tableValues"`
	CascadeColumnData cascadeData                  `json:"casscadeColumnData"`
	Conditions        map[string]map[string]string `json:"conditions"`
}

// cascadeData names one entry (key, a plan id in HAS) of the cascade column, a
// map<text,text> whose values are JSON objects of strings, and the fields to set in it.
type cascadeData struct {
	Key   any            `json:"key"`
	Value map[string]any `json:"value"`
}

// decodeConditional reads and checks a conditional request; insert also needs the row's
// values and the statuses to record when the row exists and when it does not.
func decodeConditional(body io.Reader, insert bool) (jsonConditional, error) {
	var b jsonConditional
	if err := decode(body, &b, true); err != nil {
		return b, err
	}
	pkv, _ := scalarText(b.PrimaryKeyValue)
	key, _ := scalarText(b.CascadeColumnData.Key)
	switch {
	case b.PrimaryKey == "" || pkv == "" || b.CascadeColumnName == "" || key == "" || b.CascadeColumnData.Value == nil:
		return b, badRequest("One or more input values missing: primaryKey, primaryKeyValue, casscadeColumnName and casscadeColumnData {key, value} are required")
	case insert && (len(b.TableValues) == 0 || b.Conditions["exists"]["status"] == "" || b.Conditions["nonexists"]["status"] == ""):
		return b, badRequest("One or more input values missing: tableValues and conditions {exists: {status}, nonexists: {status}} are required")
	}
	b.PrimaryKeyValue, b.CascadeColumnData.Key = pkv, key
	return b, nil
}

// scalarText is a JSON string or number as text.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case float64, bool:
		return fmt.Sprint(x), true
	}
	return "", false
}

func (b jsonConditional) row(r *http.Request) cas.Row {
	return cas.Row{Keyspace: r.PathValue("keyspace"), Table: r.PathValue("table"),
		Key: map[string]any{b.PrimaryKey: b.PrimaryKeyValue}}
}

// entry is the cascade column's value for the request's key with fields set.
func (b jsonConditional) entry(fields map[string]any) string {
	raw, _ := json.Marshal(fields)
	return string(raw)
}

// insertConditional inserts the row with its cascade entry's status set to
// conditions.nonexists.status, or, when the row exists, adds the entry with
// conditions.exists.status to its cascade column. As ONAP, it answers 200 with the
// outcome in status, and the message "Insert values: " or "Update values: {key=entry}".
func (a *API) insertConditional(w http.ResponseWriter, r *http.Request, c caller) {
	if !a.allowed(w, c, r.PathValue("keyspace")) {
		return
	}
	b, err := decodeConditional(r.Body, true)
	if err != nil {
		fail(w, err)
		return
	}
	key := b.CascadeColumnData.Key.(string)
	msg := "Insert values: "
	err = a.cas.Swap(r.Context(), b.row(r), func(cur map[string]any) (cas.Change, error) {
		if cur == nil {
			vals := jsonValues(b.TableValues)
			vals[b.CascadeColumnName] = map[string]any{key: b.entry(withStatus(b, "nonexists"))}
			return cas.Change{Insert: vals}, nil
		}
		m, err := cascadeMap(cur, b.CascadeColumnName)
		if err != nil {
			return cas.Change{}, err
		}
		e := b.entry(withStatus(b, "exists"))
		m[key], msg = e, "Update values: {"+key+"="+e+"}"
		return cas.Change{Update: map[string]any{b.CascadeColumnName: m}}, nil
	})
	if err != nil {
		writeJSON(w, conditionalStatus(err, http.StatusOK), obj{"status": "FAILURE", "message": err.Error()})
		return
	}
	success(w, obj{"message": msg})
}

// updateConditional sets, in the existing row's cascade entry, the fields of
// casscadeColumnData.value that the entry already has, and writes tableValues. A missing
// row answers 400 "Cannot find data related to key: <primaryKey>", as ONAP.
func (a *API) updateConditional(w http.ResponseWriter, r *http.Request, c caller) {
	if !a.allowed(w, c, r.PathValue("keyspace")) {
		return
	}
	b, err := decodeConditional(r.Body, false)
	if err != nil {
		fail(w, err)
		return
	}
	key := b.CascadeColumnData.Key.(string)
	err = a.cas.Swap(r.Context(), b.row(r), func(cur map[string]any) (cas.Change, error) {
		if cur == nil {
			return cas.Change{}, fmt.Errorf("%w: Cannot find data related to key: %s", cas.ErrNoRow, b.PrimaryKey)
		}
		m, err := cascadeMap(cur, b.CascadeColumnName)
		if err != nil {
			return cas.Change{}, err
		}
		old := entryFields(m[key])
		for k, v := range b.CascadeColumnData.Value {
			if _, ok := old[k]; ok {
				old[k] = v
			}
		}
		m[key] = b.entry(old)
		upd := jsonValues(b.TableValues)
		if upd == nil {
			upd = map[string]any{}
		}
		delete(upd, b.PrimaryKey)
		upd[b.CascadeColumnName] = m
		return cas.Change{Update: upd}, nil
	})
	if err != nil {
		writeJSON(w, conditionalStatus(err, http.StatusBadRequest), obj{"status": "FAILURE", "message": err.Error()})
		return
	}
	success(w, obj{"message": "update success"})
}

// conditionalStatus is ONAP's code for a failed conditional operation (insert answers
// 200, update 400), except for bad input, which is 400 here as for every endpoint.
func conditionalStatus(err error, onap int) int {
	if errors.Is(err, errBadRequest) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
		return http.StatusBadRequest
	}
	return onap
}

func withStatus(b jsonConditional, cond string) map[string]any {
	f := maps.Clone(b.CascadeColumnData.Value)
	f["status"] = b.Conditions[cond]["status"]
	return f
}

// cascadeMap copies the row's cascade column, which must be a map<text,text>.
func cascadeMap(row map[string]any, col string) (map[string]any, error) {
	out := map[string]any{}
	switch m := row[strings.ToLower(col)].(type) {
	case map[string]string:
		for k, v := range m {
			out[k] = v
		}
	case nil:
	default:
		return nil, badRequest("casscadeColumnName %s must name a map<text,text> column", col)
	}
	return out, nil
}

// entryFields parses a cascade entry: a JSON object, or ONAP's loose {k:v,k2:v2} form.
func entryFields(v any) map[string]any {
	s, _ := v.(string)
	out := map[string]any{}
	if json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	out = map[string]any{}
	for _, kv := range strings.Split(strings.NewReplacer("{", "", "}", "", `"`, "").Replace(s), ",") {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			out[strings.TrimSpace(k)] = v
		}
	}
	return out
}
