package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"registrar/audit"
	"registrar/authz"
	"registrar/oneroster"
	"registrar/records"
	"registrar/sqlstore"
)

// Outcomes of an inbound event, as kept in the inbox.
const (
	OutcomeApplied   = "applied"
	OutcomeDead      = "dead-letter"
	OutcomeDuplicate = "duplicate" // not kept: a duplicate leaves no trace but a counter
)

// studentField names the field of each entity that identifies the student a row is
// about, for the audit trail (as the REST handlers do).
var studentField = map[string]string{
	"user": "sourcedId", "demographics": "sourcedId", "enrollment": "user", "result": "student", "assessmentResult": "student",
}

func touched(e *records.Entity, objs ...records.Object) []string {
	field := studentField[e.Name]
	if field == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, o := range objs {
		if id := o.Str(field); id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// CanApply reports whether a principal may write entity e through the stream. The SIS
// is a registered client: with the admin scope it writes every entity, rostering
// included (the REST API keeps rostering read-only); without it, what its gradebook
// and assessment write scopes allow, as over REST. Rows are then limited by the
// client's orgs (Scope.Rows), as for every write.
func CanApply(sc *authz.Scope, e *records.Entity, op string) bool {
	if sc.Denied() {
		return false
	}
	if sc.P.Has(authz.AdminScope) {
		return true
	}
	if e.Service != "gradebook" {
		return false
	}
	if op == OpDelete {
		return sc.CanWrite(e, authz.WriteDelete)
	}
	return sc.CanWrite(e, authz.WritePut)
}

// cascades: deleting one of these deletes the objects that belong to it (as over REST).
var cascades = map[string][]struct {
	entity *records.Entity
	column string
}{
	"lineItem":           {{records.Result, "line_item_id"}},
	"assessmentLineItem": {{records.AssessmentResult, "assessment_line_item_id"}},
}

// applyEvent applies one parsed event inside tx and returns the audit event to add.
// A *records.Error other than Unavailable means the event is bad (dead letter); any
// other error means the batch must be retried.
func applyEvent(ctx context.Context, tx *sqlstore.Tx, sc *authz.Scope, ev *Event, base audit.Event) (audit.Event, error) {
	e, _ := records.EntityNamed(ev.Entity) // checked by ParseEvent
	aev := base
	aev.Action, aev.ResourceType, aev.ResourceID = "stream."+ev.Op, e.Name, ev.SourcedID
	if !CanApply(sc, e, ev.Op) {
		return aev, &records.Error{Code: records.Forbidden, Message: fmt.Sprintf("client %s may not write %s through the stream", sc.P.ID, e.Collection)}
	}
	rows := sc.Rows(e)
	if ev.Op == OpDelete {
		return applyDelete(ctx, tx, sc, e, ev.SourcedID, aev, rows)
	}
	obj, err := oneroster.DecodeObject(e, ev.Object)
	if err != nil {
		return aev, err
	}
	if id := obj.ID(); id != "" && id != ev.SourcedID {
		return aev, &records.Error{Code: records.Invalid, Message: "object.sourcedId differs from the event's sourcedId"}
	}
	obj["sourcedId"] = ev.SourcedID
	if obj.Str("status") == "" {
		obj["status"] = records.StatusActive
	}
	exists, err := tx.Exists(ctx, e, records.Predicate{}, ev.SourcedID)
	if err != nil {
		return aev, err
	}
	if exists {
		if ok, err := tx.Exists(ctx, e, rows, ev.SourcedID); err != nil || !ok {
			return aev, outOfScope(err, e, ev.SourcedID)
		}
	}
	if errs := records.Validate(e, obj); len(errs) > 0 {
		return aev, records.InvalidFields(e.Name, errs)
	}
	if err := refsVisible(ctx, tx, sc, e, obj); err != nil {
		return aev, err
	}
	res, err := tx.Put(ctx, e, obj, sqlstore.PutOptions{})
	if err != nil {
		return aev, err
	}
	// After the write the row must still be the client's: an SIS for one school cannot
	// create a user of another, nor move one out of its own.
	if ok, err := tx.Exists(ctx, e, rows, ev.SourcedID); err != nil || !ok {
		return aev, outOfScope(err, e, ev.SourcedID)
	}
	aev.Students = touched(e, obj)
	aev.Outcome = audit.OK
	aev.Detail = map[sqlstore.PutResult]string{sqlstore.Created: "created", sqlstore.Updated: "replaced"}[res]
	return aev, nil
}

func outOfScope(err error, e *records.Entity, id string) error {
	if err != nil {
		return err
	}
	return &records.Error{Code: records.NotFound, Message: fmt.Sprintf("%s %q is not within the client's scope", e.Name, clip(id))}
}

func applyDelete(ctx context.Context, tx *sqlstore.Tx, sc *authz.Scope, e *records.Entity, id string, aev audit.Event, rows records.Predicate) (audit.Event, error) {
	old, err := tx.Get(ctx, e, rows, id)
	if records.IsNotFound(err) {
		exists, xerr := tx.Exists(ctx, e, records.Predicate{}, id)
		if xerr != nil {
			return aev, xerr
		}
		if exists {
			return aev, outOfScope(nil, e, id)
		}
		// Already gone: deleting is idempotent. Audited, not dead-lettered.
		aev.Outcome, aev.Detail = audit.NotFound, "already absent"
		return aev, nil
	}
	if err != nil {
		return aev, err
	}
	students := touched(e, old)
	for _, c := range cascades[e.Name] {
		ids, err := tx.IDs(ctx, c.entity, c.column, id)
		if err != nil {
			return aev, err
		}
		for _, cid := range ids {
			child, err := tx.Get(ctx, c.entity, records.Predicate{}, cid)
			if err != nil {
				return aev, err
			}
			students = append(students, touched(c.entity, child)...)
			if err := tx.Delete(ctx, c.entity, cid); err != nil {
				return aev, err
			}
		}
	}
	refs, err := tx.Referrers(ctx, e, id)
	if err != nil {
		return aev, err
	}
	if len(refs) > 0 {
		return aev, &records.Error{Code: records.Conflict, Message: fmt.Sprintf("%s %q is still referred to by %s", e.Name, clip(id), strings.Join(refs, ", "))}
	}
	if err := tx.Delete(ctx, e, id); err != nil {
		return aev, err
	}
	aev.Students, aev.Outcome, aev.Detail = students, audit.OK, "deleted"
	return aev, nil
}

// refsVisible requires every object a written object refers to to be visible to the
// writer, as over REST: a reference is not a way to learn that an id exists.
func refsVisible(ctx context.Context, tx *sqlstore.Tx, sc *authz.Scope, e *records.Entity, obj records.Object) error {
	var problems []records.FieldError
	for i := range e.Fields {
		f := &e.Fields[i]
		if f.Kind != records.KRef {
			continue
		}
		id := obj.Str(f.Name)
		if id == "" {
			continue
		}
		te, _ := records.EntityNamed(f.Target)
		if te == e && id == obj.ID() {
			continue
		}
		pred := sc.Rows(te)
		if !sc.CanRead(te) {
			pred = records.Predicate{} // no read scope of the target: existence is checked by Put
		}
		ok, err := tx.Exists(ctx, te, pred, id)
		if err != nil {
			return err
		}
		if !ok {
			problems = append(problems, records.FieldError{Field: f.Name, Message: fmt.Sprintf("refers to %s %q, which does not exist", te.Name, clip(id))})
		}
	}
	if len(problems) > 0 {
		return records.InvalidFields(e.Name+" "+clip(obj.ID()), problems)
	}
	return nil
}

// deadReason is a dead letter's reason: the error's caller-safe message (records
// errors never carry a sensitive value), or "internal error" for anything else.
func deadReason(err error) (reason, outcome string) {
	var re *records.Error
	var ee *EventError
	switch {
	case errors.As(err, &ee):
		return ee.Msg, audit.Invalid
	case errors.As(err, &re):
		outcome := map[records.Code]string{records.Forbidden: audit.Denied, records.NotFound: audit.NotFound}[re.Code]
		if outcome == "" {
			outcome = audit.Invalid
		}
		if re.Code == records.Internal {
			return "internal error", audit.Failed
		}
		return string(re.Code) + ": " + re.Message, outcome
	}
	return "internal error", audit.Failed
}

// fatal reports whether err must fail the whole batch (retried later) rather than
// dead-letter one event: the database, the context, a lost lease.
func fatal(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var re *records.Error
	if errors.As(err, &re) {
		return re.Code == records.Unavailable
	}
	var ee *EventError
	return !errors.As(err, &ee)
}
