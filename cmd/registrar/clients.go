package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

func runClients(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, msg: "want a subcommand: create | list | revoke"}
	}
	switch args[0] {
	case "create":
		return clientsCreate(ctx, e, args[1:])
	case "list":
		return clientsList(ctx, e, args[1:])
	case "revoke":
		return clientsRevoke(ctx, e, args[1:])
	}
	return &exitError{code: 2, msg: fmt.Sprintf("unknown subcommand %q: want create | list | revoke", args[0])}
}

func clientsCreate(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "clients create", "--name NAME --scope \"SCOPE ...\" [--orgs ID,...] [--vendor --contract REF] [--json]")
	name := fs.String("name", "", "a name people will recognise (the vendor or system)")
	scope := fs.String("scope", "", "OneRoster scopes, space or comma separated, short (roster.readonly) or full URIs; also: admin")
	orgs := fs.String("orgs", "*", "sourcedIds of the orgs the client serves (a district or schools), comma separated; * for the whole district")
	basis := fs.String("legal-basis", authz.BasisSchoolOfficial, "34 CFR 99.31(a) basis: "+strings.Join(authz.LegalBases, ", "))
	vendor := fs.Bool("vendor", false, "the client is an outside vendor (a contractor acting as a school official): needs --contract")
	contract := fs.String("contract", "", "reference of the agreement that binds the vendor (99.31(a)(1)(i)(B))")
	purpose := fs.String("purpose", "", "what the client may use the data for; sent with every response (99.33)")
	asJSON := fs.Bool("json", false, "print {\"client_id\": ..., \"client_secret\": ...} for scripts")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	var problems []string
	if strings.TrimSpace(*name) == "" {
		problems = append(problems, "--name is required")
	}
	var scopes []string
	for _, s := range strings.FieldsFunc(*scope, func(r rune) bool { return r == ' ' || r == ',' }) {
		full, ok := authz.ExpandScope(s)
		if !ok {
			problems = append(problems, fmt.Sprintf("--scope: %q is not a scope; known: %s", s, strings.Join(authz.AllScopes, " ")))
			continue
		}
		if !slices.Contains(scopes, full) {
			scopes = append(scopes, full)
		}
	}
	if len(scopes) == 0 && *scope == "" {
		problems = append(problems, "--scope is required (for example \"roster.readonly gradebook.readonly\")")
	}
	if !slices.Contains(authz.LegalBases, *basis) {
		problems = append(problems, fmt.Sprintf("--legal-basis: %q is not one of %s", *basis, strings.Join(authz.LegalBases, ", ")))
	}
	if *vendor && strings.TrimSpace(*contract) == "" {
		problems = append(problems, "--vendor needs --contract REF: a vendor is a school official only under an agreement (34 CFR 99.31(a)(1)(i)(B))")
	}
	var orgList []string
	for _, o := range strings.Split(*orgs, ",") {
		if o = strings.TrimSpace(o); o != "" {
			orgList = append(orgList, o)
		}
	}
	if len(orgList) == 0 {
		problems = append(problems, "--orgs must name at least one org, or *")
	}
	if len(problems) > 0 {
		return &exitError{code: 2, msg: strings.Join(problems, "\n")}
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	secret, hash := authn.NewSecret()
	c := records.Client{ID: vault.RandomID(), Name: *name, SecretHash: hash, Scopes: scopes, Orgs: orgList, LegalBasis: *basis, ContractRef: *contract, Purpose: *purpose}
	ev := operatorEvent("client.create")
	ev.ResourceType, ev.ResourceID, ev.LegalBasis, ev.Detail = "client", c.ID, c.LegalBasis, c.Name
	err = a.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		for _, o := range orgList {
			if o == "*" {
				continue
			}
			ok, err := tx.Exists(ctx, records.Org, records.Predicate{}, o)
			if err != nil {
				return err
			}
			if !ok {
				return &records.Error{Code: records.Invalid, Message: fmt.Sprintf("--orgs: org %q does not exist (import the roster first, or use *)", o)}
			}
		}
		return tx.PutClient(ctx, c)
	}, ev)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]string{"client_id": c.ID, "client_secret": secret})
	}
	fmt.Fprintf(e.stdout, "client_id:     %s\nclient_secret: %s\n\nThe secret is shown only now; registrar keeps only a hash of it.\nGet a token:\n  curl -s -u '%s:%s' -d grant_type=client_credentials http://%s/oauth/token\n",
		c.ID, secret, c.ID, secret, cfg.Addr)
	return nil
}

func clientsList(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "clients list", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	clients, err := a.store.Clients(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		type out struct {
			ID          string     `json:"client_id"`
			Name        string     `json:"name"`
			Scopes      []string   `json:"scopes"`
			Orgs        []string   `json:"orgs"`
			LegalBasis  string     `json:"legal_basis"`
			ContractRef string     `json:"contract_ref,omitempty"`
			CreatedAt   time.Time  `json:"created_at"`
			RevokedAt   *time.Time `json:"revoked_at,omitempty"`
		}
		list := []out{}
		for _, c := range clients {
			list = append(list, out{c.ID, c.Name, c.Scopes, c.Orgs, c.LegalBasis, c.ContractRef, c.CreatedAt, c.RevokedAt})
		}
		return json.NewEncoder(e.stdout).Encode(list)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tSTATE\tBASIS\tSCOPES")
	for _, c := range clients {
		state := "active"
		if c.RevokedAt != nil {
			state = "revoked " + c.RevokedAt.Format(time.DateOnly)
		}
		var short []string
		for _, s := range c.Scopes {
			short = append(short, strings.TrimPrefix(s, authz.ScopePrefix))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, state, c.LegalBasis, strings.Join(short, " "))
	}
	return tw.Flush()
}

func clientsRevoke(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "clients revoke", "CLIENT_ID")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, msg: "want exactly one CLIENT_ID"}
	}
	id := fs.Arg(0)
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	ev := operatorEvent("client.revoke")
	ev.ResourceType, ev.ResourceID = "client", id
	if err := a.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, id) }, ev); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %s: its tokens no longer work\n", id)
	return nil
}

func runTokens(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "issue" {
		return &exitError{code: 2, msg: "want: tokens issue --user SOURCEDID [--ttl 1h]"}
	}
	fs, vals := newFlags(e, "tokens issue", "--user SOURCEDID [--ttl 1h]")
	user := fs.String("user", "", "sourcedId of the roster user the token speaks for")
	ttl := fs.Duration("ttl", time.Hour, "lifetime, at most 12h")
	cfg, err := parse(e, fs, vals, args[1:])
	if err != nil {
		return err
	}
	if *user == "" {
		return &exitError{code: 2, msg: "--user is required"}
	}
	if *ttl <= 0 || *ttl > 12*time.Hour {
		return &exitError{code: 2, msg: "--ttl must be between 1s and 12h"}
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	if _, enabled, err := a.store.UserRoles(ctx, *user); err != nil {
		return err
	} else if !enabled {
		return &exitError{code: 1, msg: fmt.Sprintf("user %q does not exist, is not active, or is disabled", *user)}
	}
	tok, err := a.auth.IssueUserToken(*user, *ttl)
	if err != nil {
		return err
	}
	ev := operatorEvent("token.issue")
	ev.ResourceType, ev.ResourceID = "user", *user
	if err := a.store.Audit(ctx, ev); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}
