package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"time"

	"registrar/authn"
	"registrar/httpapi"
)

func runServe(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "serve", "[flags]")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if err := cfg.ValidateListen(); err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	log := newLogger(e, cfg.LogLevel)
	a, err := openApp(ctx, e, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	return serve(ctx, e, a, nil)
}

// serve runs the HTTP server until ctx ends, then drains. ready, if set, receives the
// listening address.
func serve(ctx context.Context, e *env, a *app, ready func(addr string)) error {
	cfg := a.cfg
	jwks, err := authn.JWKS(a.vault)
	if err != nil {
		return err
	}
	srv := httpapi.New(httpapi.Options{Store: a.store, Auth: a.auth, Logger: a.log, Location: cfg.Timezone, BaseURL: cfg.BaseURL, MaxBody: cfg.MaxBody, JWKS: jwks, Cache: a.cache})
	imports, err := newImportService(ctx, a)
	if err != nil {
		return err
	}
	defer imports.Close()
	srv.Importer = imports
	docs, err := openDocuments(a)
	if err != nil {
		return err
	}
	srv.Students = httpapi.Students{Documents: docs, Signer: a.vault}
	stopWorker, err := startEmbeddedWorker(ctx, a) // single-node mode: the stream worker runs in-process (worker.go)
	if err != nil {
		return err
	}
	defer stopWorker() // before the caller closes the store
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // imports upload large packages
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	scheme := "http"
	if cfg.TLSCert != "" || cfg.TLSSelfSigned {
		scheme = "https"
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				ln.Close()
				return fmt.Errorf("TLS certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		} else {
			cert, err := selfSigned()
			if err != nil {
				ln.Close()
				return err
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		ln = tls.NewListener(ln, tc)
	}
	addr := ln.Addr().String()
	a.log.Info("listening", "addr", addr, "scheme", scheme, "data", cfg.Data)
	fmt.Fprintf(e.stdout, "registrar listening on %s://%s (data in %s)\n", scheme, addr, cfg.Data)
	if clients, err := a.store.Clients(ctx); err == nil && len(clients) == 0 {
		fmt.Fprintf(e.stdout, "No API clients yet. Create one with:\n  registrar clients create --data %s --name NAME --scope \"roster.readonly gradebook.readonly\"\n", cfg.Data)
	}
	if ready != nil {
		ready(scheme + "://" + addr)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down: draining requests")
	srv.SetReady(false)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		a.log.Error("shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(e.stdout, "registrar stopped")
	return nil
}

// selfSigned makes a throwaway certificate for --tls-self-signed.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "registrar (self-signed)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func runMigrate(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "migrate", "[flags]")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.store.Ping(ctx); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "database schema is current")
	return nil
}
