package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/gen"
	"registrar/importer"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// demoFile keeps what the demo printed, so a restart on the same data dir can print it again.
const demoFile = "demo.json"

type demoInfo struct {
	ClientID     string      `json:"client_id"`
	ClientSecret string      `json:"client_secret"`
	Summary      gen.Summary `json:"summary"`
}

func runGenerate(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "generate", "--out DIR [--students N] [--seed N] [--zip]")
	out := fs.String("out", "", "folder (or .zip file with --zip) to write the package to")
	students := fs.Int("students", 1000, "number of students")
	seed := fs.Uint64("seed", 1, "seed: the same seed and size give the same package, byte for byte")
	asZip := fs.Bool("zip", false, "write a zip instead of a folder")
	canary := fs.String("canary", "", "embed this string in every sensitive value (leak tests)")
	today := fs.String("today", "", "the generator's reference date YYYY-MM-DD (school year, ages); default today")
	rcfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if *out == "" || *students < 1 {
		return &exitError{code: 2, msg: "--out is required and --students must be at least 1"}
	}
	cfg := gen.Defaults(*students)
	cfg.Seed, cfg.Canary = *seed, *canary
	cfg.Today = time.Now().In(rcfg.Timezone)
	if *today != "" {
		t, err := records.ParseDate(*today)
		if err != nil {
			return &exitError{code: 2, msg: "--today: " + err.Error()}
		}
		cfg.Today = t
	}
	var sum gen.Summary
	if *asZip {
		f, ferr := os.OpenFile(*out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if ferr != nil {
			return ferr
		}
		sum, err = gen.WriteZip(ctx, f, cfg)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	} else {
		sum, err = gen.WriteCSV(ctx, *out, cfg)
	}
	if err != nil {
		return err
	}
	total := 0
	for _, n := range sum.Counts {
		total += n
	}
	fmt.Fprintf(e.stdout, "wrote a synthetic district of %d students (%d rows) to %s\n", *students, total, *out)
	return nil
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "demo", "[--students N] [--seed N] [--fresh] [flags of serve]")
	students := fs.Int("students", 2000, "number of students in the generated district")
	seed := fs.Uint64("seed", 1, "generator seed")
	fresh := fs.Bool("fresh", false, "delete the demo data dir first")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	dataSet := e.getenv("REGISTRAR_DATA") != ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "data" {
			dataSet = true
		}
	})
	if !dataSet {
		cfg.Data = "./registrar-demo"
	}
	if err := cfg.ValidateListen(); err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	if *fresh {
		if err := os.RemoveAll(cfg.Data); err != nil {
			return err
		}
	}
	log := newLogger(e, cfg.LogLevel)
	var info demoInfo
	b, err := os.ReadFile(filepath.Join(cfg.Data, demoFile))
	existing := err == nil && json.Unmarshal(b, &info) == nil
	if !existing {
		if entries, _ := os.ReadDir(cfg.Data); len(entries) > 0 {
			return &exitError{code: 2, msg: fmt.Sprintf("%s holds data that is not a demo; use --fresh or another --data", cfg.Data)}
		}
	}
	a, err := openApp(ctx, e, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	if !existing {
		if info, err = makeDemo(ctx, e, a, *students, *seed); err != nil {
			return err
		}
	}
	tok, err := a.auth.IssueClientToken(ctx, info.ClientID, info.ClientSecret, "")
	if err != nil {
		return fmt.Errorf("demo token: %w", err)
	}
	s := info.Summary
	fmt.Fprintf(e.stdout, `
registrar demo: a synthetic district (every value is fake) in %s

An API client with every scope:
  export CLIENT_ID=%s
  export CLIENT_SECRET=%s
  export TOKEN=%s
Sample ids for the tour in README.md:
  export TEACHER=%s CLASS=%s STUDENT=%s LINE_ITEM=%s GUARDIAN=%s ADMIN=%s

`, cfg.Data, info.ClientID, info.ClientSecret, tok.AccessToken, s.SampleTeacher, s.SampleClass, s.SampleStudent, s.SampleLineItem, s.SampleGuardian, s.SampleAdmin)
	return serve(ctx, e, a, nil)
}

// makeDemo generates a district, imports it and registers a client.
func makeDemo(ctx context.Context, e *env, a *app, students int, seed uint64) (demoInfo, error) {
	var info demoInfo
	pkg := filepath.Join(a.cfg.Data, "demo-package")
	defer os.RemoveAll(pkg)
	gcfg := gen.Defaults(students)
	gcfg.Seed = seed
	gcfg.Today = time.Now().In(a.cfg.Timezone)
	fmt.Fprintf(e.stdout, "generating a synthetic district of %d students...\n", students)
	sum, err := gen.WriteCSV(ctx, pkg, gcfg)
	if err != nil {
		return info, err
	}
	fmt.Fprintln(e.stdout, "importing it...")
	res, err := importer.New(a.store, a.log).Import(ctx, pkg, importer.Options{Event: operatorEvent("import")})
	if err != nil {
		var ie *importer.InvalidError
		if errors.As(err, &ie) {
			return info, fmt.Errorf("the generated package does not import (a bug):\n%s", importer.Lines(ie, 20))
		}
		return info, err
	}
	fmt.Fprintln(e.stdout, res.Line())
	secret, hash := authn.NewSecret()
	c := records.Client{ID: vault.RandomID(), Name: "demo client", SecretHash: hash, Scopes: authz.AllScopes, Orgs: []string{"*"},
		LegalBasis: authz.BasisSchoolOfficial, Purpose: "demonstration"}
	ev := operatorEvent("client.create")
	ev.ResourceType, ev.ResourceID, ev.Detail = "client", c.ID, c.Name
	if err := a.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }, ev); err != nil {
		return info, err
	}
	info = demoInfo{ClientID: c.ID, ClientSecret: secret, Summary: sum}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(a.cfg.Data, demoFile), b, 0o600); err != nil {
		return info, err
	}
	return info, nil
}
