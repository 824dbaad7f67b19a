package stream_test

import (
	"context"
	"encoding/json"
	"registrar/internal/pgtest"
	"testing"
	"time"

	"registrar/authz"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/stream"
)

// The outbound relay publishes OneRoster changes only: a counselor's caseload and a
// dependency flag are in the change log (the scope cache watches them) but are not
// OneRoster entities, so they are skipped, and the relay moves on past them.
func TestOutboundRelayPublishesOneRosterChangesOnly(t *testing.T) {
	pgtest.ForEachEngine(t, testOutboundRelayPublishesOneRosterChangesOnly)
}

func testOutboundRelayPublishesOneRosterChangesOnly(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	if err := d.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		if _, err := tx.SetCaseload(ctx, testdistrict.Counselor, []string{testdistrict.Minor}, "user:"+testdistrict.Admin); err != nil {
			return err
		}
		if _, _, err := tx.SetDependent(ctx, testdistrict.Eligible, testdistrict.Guardian2, "user:"+testdistrict.Admin); err != nil {
			return err
		}
		return tx.Delete(ctx, records.Result, testdistrict.ResultB) // a OneRoster change after them
	}); err != nil {
		t.Fatal(err)
	}
	out := stream.NewEmbedded(d.store, "outbox", 1)
	w := newWorker(d, "w1", &tally{})
	w.Out = out
	runWorker(t, w)
	var got []stream.Change
	waitFor(t, "the result's deletion published", 20*time.Second, func() bool {
		got = got[:0]
		shards, err := out.Shards(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range shards {
			b, err := out.Read(ctx, sh.ID, "", 10000)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range b.Records {
				var c stream.Change
				if err := json.Unmarshal(r.Data, &c); err != nil {
					t.Fatal(err)
				}
				got = append(got, c)
			}
		}
		return len(got) > 0 && got[len(got)-1].Entity == records.Result.Name && got[len(got)-1].SourcedID == testdistrict.ResultB
	})
	for _, c := range got {
		if c.Entity == authz.ChangeCaseload || c.Entity == authz.ChangeDependent {
			t.Errorf("published %+v: not a OneRoster change", c)
		}
	}
	if len(got) != len(testdistrict.Objects())+1 {
		t.Errorf("published %d changes, want the district's %d and the deletion", len(got), len(testdistrict.Objects()))
	}
}
