package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"registrar/audit"
	"registrar/records"
	"registrar/vault"
)

// CertificateType is the type of a signed deletion certificate.
const CertificateType = "registrar.deletion-certificate/v1"

// CertificateSigner signs deletion certificates (the vault).
type CertificateSigner interface {
	SignJSON(typ string, body any) ([]byte, error)
}

// SubjectFiles is a person's files outside the database (the document folder).
type SubjectFiles interface {
	Count(subject string) (int, error)
	DeleteSubject(subject string) (int, error)
}

// PurgeRequest asks for the destruction of one student's records.
type PurgeRequest struct {
	Student string
	Reason  string
	// Event names who asks (principal, client, request id, source); Purge sets the
	// action, resource, students, outcome and detail.
	Event     audit.Event
	Signer    CertificateSigner
	Documents SubjectFiles // nil when documents are not configured
}

// Actor is who deleted, as the certificate names them.
type Actor struct {
	Kind      string `json:"kind"`
	ID        string `json:"id"`
	ClientID  string `json:"clientId,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// DeletionCertificate is the body of a signed deletion certificate. It names the
// student by sourcedId only: a certificate outlives the record and must not carry it.
type DeletionCertificate struct {
	ID        string         `json:"id"`
	Student   string         `json:"student"`
	IssuedAt  string         `json:"issuedAt"`
	DeletedBy Actor          `json:"deletedBy"`
	Reason    string         `json:"reason,omitempty"`
	System    string         `json:"system"`
	Instance  string         `json:"instance"`
	Deleted   map[string]int `json:"deleted"`
	// KeysDestroyed are the student's keys deleted from the key table.
	KeysDestroyed []string `json:"keysDestroyed"`
	// UnreadableEverywhere are the values that no copy anywhere can be decrypted
	// without the destroyed keys: the encrypted fields and document contents.
	UnreadableEverywhere []string `json:"unreadableEverywhere"`
	// WrappedUnder are the KEK versions the destroyed keys were wrapped under: a
	// database backup taken before IssuedAt holds the key wrapped under them until
	// they are retired by key rotation.
	WrappedUnder []uint32 `json:"wrappedUnder"`
	// NotEncrypted are the fields of the deleted rows that are stored in plaintext:
	// gone from this database, but present in backups taken before IssuedAt until
	// those backups expire.
	NotEncrypted []string `json:"notEncrypted"`
	Statement    string   `json:"statement"`
}

// PurgeResult is what Purge did.
type PurgeResult struct {
	Certificate []byte // the signed certificate (vault.Signed JSON)
	Body        DeletionCertificate
}

// purgeGuard is a state in which a student's records must not be destroyed: query
// returns a row when it holds, binding the student id once.
type purgeGuard struct {
	reason string
	query  string
}

// purgeGuards hold back a purge. 34 CFR 99.10(e): no destruction while a request to
// inspect is open; nor while a legal hold stands. Their tables come with the FERPA
// workflows; each adds its guard here, e.g.
// {"a legal hold", "SELECT 1 FROM legal_holds WHERE student_id = ? AND released_at IS NULL"}.
var purgeGuards []purgeGuard

// Purge destroys a student: their user row and roles, demographics, enrollments,
// results and assessment results, the agent links to and from them, their data key
// and document key, in one transaction with its audit event and a signed deletion
// certificate; then their document files. Every copy of their encrypted values, in
// backups and streams included, can no longer be decrypted.
func (s *Store) Purge(ctx context.Context, req PurgeRequest) (PurgeResult, error) {
	var res PurgeResult
	if req.Signer == nil {
		return res, errors.New("sqlstore: purge needs a certificate signer")
	}
	// The reason goes into the signed certificate: a reference such as a request
	// number, not personal data, and text both engines can hold (records.ValidText).
	if len(req.Reason) > 200 {
		return res, &records.Error{Code: records.Invalid, Field: "reason", Message: "reason is at most 200 characters: a reference such as a request number"}
	}
	if err := records.ValidText(req.Reason); err != nil {
		return res, &records.Error{Code: records.Invalid, Field: "reason", Message: "reason " + err.Error()}
	}
	docs := 0
	if req.Documents != nil {
		n, err := req.Documents.Count(req.Student)
		if err != nil {
			return res, &records.Error{Code: records.Unavailable, Message: "the document folder is not answering; retry", Err: err}
		}
		docs = n
	}
	ev := req.Event
	ev.Action, ev.ResourceType, ev.ResourceID, ev.Students = "students.purge", "user", req.Student, []string{req.Student}
	err := s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		body, err := tx.purge(ctx, req, docs)
		if err != nil {
			return err
		}
		doc, err := req.Signer.SignJSON(CertificateType, body)
		if err != nil {
			return &records.Error{Code: records.Internal, Message: "internal error", Err: err}
		}
		if _, err := tx.exec(ctx, "INSERT INTO deletion_certificates (id, subject_id, issued_at, document) VALUES (?, ?, ?, ?)",
			body.ID, req.Student, body.IssuedAt, string(doc)); err != nil {
			return unavailable("store deletion certificate", err)
		}
		e := ev
		e.Outcome, e.Status, e.Detail = audit.OK, 200, "deletion certificate "+body.ID
		tx.Audit(e)
		res = PurgeResult{Certificate: doc, Body: body}
		return nil
	})
	if err != nil {
		var re *records.Error
		if errors.As(err, &re) && re.Code == records.NotFound && req.Documents != nil {
			// An earlier purge may have stopped before its files went: their key is gone,
			// so they are noise; clear them.
			if _, derr := req.Documents.DeleteSubject(req.Student); derr != nil {
				s.log.Warn("purge: leftover document files not removed", "err", derr)
			}
		}
		return res, err
	}
	s.vault.Forget(req.Student)
	if req.Documents != nil {
		if _, err := req.Documents.DeleteSubject(req.Student); err != nil {
			// The key is destroyed: the files cannot be read. Say so, and let a retry clear them.
			return res, &records.Error{Code: records.Unavailable, Message: "the student was deleted and their document key destroyed, but some document files could not be removed; run the purge again to remove them", Err: err}
		}
	}
	return res, nil
}

func (t *Tx) purge(ctx context.Context, req PurgeRequest, docs int) (DeletionCertificate, error) {
	id := req.Student
	var c DeletionCertificate
	var one int
	err := t.queryRow(ctx, "SELECT 1 FROM users u WHERE u.sourced_id = ? AND EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.sourced_id AND r.role = 'student')", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return c, &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("student %q not found", clipID(id))}
	}
	if err != nil {
		return c, unavailable("purge", err)
	}
	for _, g := range purgeGuards {
		err := t.queryRow(ctx, g.query, id).Scan(&one)
		if err == nil {
			return c, &records.Error{Code: records.Conflict, Message: fmt.Sprintf("student %q cannot be deleted while %s exists (34 CFR 99.10(e))", clipID(id), g.reason)}
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return c, unavailable("purge guard", err)
		}
	}

	deleted := map[string]int{}
	purged := map[*records.Entity]bool{}
	// Rows about the student in other entities: those whose subject is the student
	// (demographics share the user's sourcedId), and those with a reference to them.
	for _, e := range records.Entities {
		if e == records.User {
			continue
		}
		var ids []string
		if e.Subject == "sourcedId" {
			ok, err := t.Exists(ctx, e, records.Predicate{}, id)
			if err != nil {
				return c, err
			}
			if ok {
				ids = append(ids, id)
			}
		}
		for i := range e.Fields {
			f := &e.Fields[i]
			if f.Kind != records.KRef || f.Target != records.User.Name {
				continue
			}
			more, err := t.IDs(ctx, e, f.Column, id)
			if err != nil {
				return c, err
			}
			ids = append(ids, more...)
		}
		for _, rid := range ids {
			if err := t.Delete(ctx, e, rid); err != nil {
				return c, err
			}
		}
		if len(ids) > 0 {
			deleted[e.Name] = len(ids)
			purged[e] = true
		}
	}
	// Lists of references to the student on other rows (a guardian's agents).
	for _, e := range records.Entities {
		for i := range e.Fields {
			f := &e.Fields[i]
			if f.Kind != records.KRefs || f.Target != records.User.Name {
				continue
			}
			n, err := t.unlinkFrom(ctx, e, f, id)
			if err != nil {
				return c, err
			}
			deleted[f.Link] += n
		}
	}
	// The student's place in counselors' caseloads and their dependency flags.
	caseloads, dependents, err := t.purgeCaseloads(ctx, id)
	if err != nil {
		return c, err
	}
	deleted["caseloads"], deleted["dependents"] = caseloads, dependents
	var n int
	if err := t.queryRow(ctx, "SELECT COUNT(*) FROM user_roles WHERE user_id = ?", id).Scan(&n); err != nil {
		return c, unavailable("purge", err)
	}
	deleted["user_roles"] = n
	for i := range records.User.Fields {
		f := &records.User.Fields[i]
		if f.Kind != records.KRefs {
			continue
		}
		if err := t.queryRow(ctx, "SELECT COUNT(*) FROM "+f.Link+" WHERE owner_id = ?", id).Scan(&n); err != nil {
			return c, unavailable("purge", err)
		}
		deleted[f.Link] += n
	}
	if err := t.Delete(ctx, records.User, id); err != nil { // with its roles and link rows
		return c, err
	}
	deleted[records.User.Name] = 1
	purged[records.User] = true
	for k, v := range deleted {
		if v == 0 {
			delete(deleted, k)
		}
	}

	// The keys: deleting the row is the crypto-shredding.
	var wrapped, doc []byte
	err = t.queryRow(ctx, "SELECT wrapped, doc_wrapped FROM subject_keys WHERE subject_id = ?", id).Scan(&wrapped, &doc)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return c, unavailable("purge", err)
	}
	if _, err := t.exec(ctx, "DELETE FROM subject_keys WHERE subject_id = ?", id); err != nil {
		return c, unavailable("destroy keys", err)
	}
	if len(wrapped) > 0 {
		c.KeysDestroyed = append(c.KeysDestroyed, "field data key (AES-256-GCM)")
	}
	if len(doc) > 0 {
		c.KeysDestroyed = append(c.KeysDestroyed, "document key (AES-256-GCM-HKDF streaming)")
	}
	for _, b := range [][]byte{wrapped, doc} {
		if kid, ok := vault.WrappedKEKID(b); ok && !slices.Contains(c.WrappedUnder, kid) {
			c.WrappedUnder = append(c.WrappedUnder, kid)
		}
	}
	if docs > 0 {
		deleted["documents"] = docs
	}

	for _, e := range records.Entities {
		if !purged[e] {
			continue
		}
		for i := range e.Fields {
			f := &e.Fields[i]
			switch {
			case f.Sensitive:
				c.UnreadableEverywhere = append(c.UnreadableEverywhere, e.Name+"."+f.Name)
			case f.Kind != records.KChildren:
				c.NotEncrypted = append(c.NotEncrypted, e.Name+"."+f.Name)
			}
		}
	}
	if docs > 0 || len(doc) > 0 {
		c.UnreadableEverywhere = append(c.UnreadableEverywhere, "documents (contents, names and content types)")
	}
	c.ID = vault.RandomID()
	c.Student = id
	c.IssuedAt = records.FormatDateTime(t.now)
	c.DeletedBy = Actor{Kind: req.Event.PrincipalKind, ID: req.Event.PrincipalID, ClientID: req.Event.ClientID, RequestID: req.Event.RequestID}
	c.Reason = req.Reason
	c.System = "registrar"
	c.Instance = t.s.commit.chain
	c.Deleted = deleted
	c.Statement = certificateStatement(c)
	return c, nil
}

// unlinkFrom removes id from the reference list f on every row of e that holds it,
// and logs each changed row.
func (t *Tx) unlinkFrom(ctx context.Context, e *records.Entity, f *records.Field, id string) (int, error) {
	owners, err := t.query(ctx, "SELECT DISTINCT owner_id FROM "+f.Link+" WHERE ref_id = ? ORDER BY owner_id", id)
	if err != nil {
		return 0, unavailable("purge links", err)
	}
	var list []string
	for owners.Next() {
		var o string
		if err := owners.Scan(&o); err != nil {
			owners.Close()
			return 0, unavailable("purge links", err)
		}
		list = append(list, o)
	}
	owners.Close()
	if err := owners.Err(); err != nil {
		return 0, unavailable("purge links", err)
	}
	total := 0
	for _, owner := range list {
		var raw sql.NullString
		if err := t.queryRow(ctx, "SELECT "+f.Column+" FROM "+e.Table+" WHERE sourced_id = ?", owner).Scan(&raw); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, unavailable("purge links", err)
		}
		var refs []string
		if raw.Valid {
			_ = json.Unmarshal([]byte(raw.String), &refs) // written by Put as a JSON list
		}
		refs = slices.DeleteFunc(refs, func(r string) bool { return r == id })
		b, _ := json.Marshal(append([]string{}, refs...)) // a list of strings: cannot fail
		if _, err := t.exec(ctx, "UPDATE "+e.Table+" SET "+f.Column+" = ?, date_last_modified = ? WHERE sourced_id = ?", string(b), records.FormatDateTime(t.now), owner); err != nil {
			return 0, unavailable("purge links", err)
		}
		res, err := t.exec(ctx, "DELETE FROM "+f.Link+" WHERE owner_id = ? AND ref_id = ?", owner, id)
		if err != nil {
			return 0, unavailable("purge links", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if _, err := t.exec(ctx, "INSERT INTO changes (entity, sourced_id, op, time) VALUES (?, ?, 'upsert', ?)", e.Name, owner, records.FormatDateTime(t.now)); err != nil {
			return 0, unavailable("log change", err)
		}
	}
	return total, nil
}

func certificateStatement(c DeletionCertificate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "At %s registrar deleted every record of student %s listed under \"deleted\" from its database", c.IssuedAt, c.Student)
	if len(c.KeysDestroyed) > 0 {
		b.WriteString(" and destroyed the student's keys. From that moment no copy of the values listed under \"unreadableEverywhere\" can be decrypted: not in this database, its replicas, change streams, caches or exports of its ciphertext, and not in any backup restored without the key table. ")
		fmt.Fprintf(&b, "Database backups taken before %s still hold those keys wrapped under key-encryption key version(s) %v; those copies become unreadable when `registrar keys rotate` retires those versions, which it does once no live key needs them. ", c.IssuedAt, c.WrappedUnder)
	} else {
		b.WriteString("; the student had no keys, hence no encrypted values. ")
	}
	fmt.Fprintf(&b, "The fields listed under \"notEncrypted\" are stored in plaintext: they are gone from the database but remain in backups taken before %s until those backups expire. ", c.IssuedAt)
	b.WriteString("The audit trail keeps the student's sourcedId in the events that concern them (identifiers, never values), and this certificate.")
	return b.String()
}
