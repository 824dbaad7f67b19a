package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"registrar/records"
)

// SchemaVersion is the version of the inbound and outbound event schemas (docs/stream.md).
const SchemaVersion = 1

// MaxEventBytes bounds one event: the size of a Kinesis record.
const MaxEventBytes = 1 << 20

// Operations of an event.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// Event is an inbound change event put by an SIS.
type Event struct {
	Version   int             `json:"version"`          // SchemaVersion
	ID        string          `json:"id"`               // unique per event; a repeated id is applied once
	Op        string          `json:"op"`               // "upsert" or "delete"
	Entity    string          `json:"entity"`           // OneRoster entity: "user", "enrollment", "result", ...
	SourcedID string          `json:"sourcedId"`        // the object's sourcedId
	Time      string          `json:"time,omitempty"`   // when the SIS made the change (RFC 3339), informational
	Object    json.RawMessage `json:"object,omitempty"` // upsert: the OneRoster 1.2 JSON object
}

// EventError says why an event does not parse. Its message never holds a field value.
type EventError struct {
	Event *Event // what could be read of it, nil if nothing
	Msg   string
}

func (e *EventError) Error() string { return e.Msg }

// ParseEvent decodes and checks an inbound event's envelope. The object itself is
// decoded and validated by the worker against the entity.
func ParseEvent(data []byte) (*Event, error) {
	if len(data) > MaxEventBytes {
		return nil, &EventError{Msg: fmt.Sprintf("event is %d bytes, more than %d", len(data), MaxEventBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		// Only the position and kind of the problem: json's messages may quote input.
		return nil, &EventError{Msg: "event is not a JSON object of the documented schema: " + jsonProblem(err)}
	}
	if dec.More() {
		return nil, &EventError{Event: &ev, Msg: "event has more than one JSON value"}
	}
	bad := func(format string, args ...any) error {
		return &EventError{Event: &ev, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case ev.Version != SchemaVersion:
		return nil, bad("version %d is not supported (want %d)", ev.Version, SchemaVersion)
	case records.ValidID(ev.ID) != nil:
		return nil, bad("id %v", records.ValidID(ev.ID))
	case ev.Op != OpUpsert && ev.Op != OpDelete:
		return nil, bad("op %s is not upsert or delete", strconv.Quote(clip(ev.Op)))
	case ev.Entity == "":
		return nil, bad("entity is required")
	case records.ValidID(ev.SourcedID) != nil:
		return nil, bad("sourcedId %v", records.ValidID(ev.SourcedID))
	case ev.Op == OpUpsert && len(ev.Object) == 0:
		return nil, bad("an upsert needs an object")
	case ev.Op == OpDelete && len(ev.Object) > 0 && string(ev.Object) != "null":
		return nil, bad("a delete carries no object")
	}
	if _, ok := records.EntityNamed(ev.Entity); !ok {
		return nil, bad("entity %s is not a OneRoster entity", strconv.Quote(clip(ev.Entity)))
	}
	if ev.Time != "" {
		if _, err := records.ParseDateTime(ev.Time); err != nil {
			return nil, bad("time is not an RFC 3339 date-time")
		}
	}
	return &ev, nil
}

func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %s has the wrong type", strconv.Quote(clip(e.Field)))
	}
	if s := err.Error(); len(s) > 20 && s[:20] == "json: unknown field " {
		return "unknown field " + clip(s[20:])
	}
	return "malformed"
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("?")))
}

// Change is an outbound event: one committed change, ids and type only.
type Change struct {
	Version   int    `json:"version"`   // SchemaVersion
	ID        string `json:"id"`        // "change-N": unique; a consumer seeing it twice ignores the second
	Seq       int64  `json:"seq"`       // N: the change log position, increasing in commit order
	Op        string `json:"op"`        // "upsert" or "delete"
	Entity    string `json:"entity"`    // OneRoster entity
	SourcedID string `json:"sourcedId"` // the object's sourcedId
	Time      string `json:"time"`      // when the change committed
}
