package oneroster

import (
	_ "embed"
)

// The official 1EdTech OneRoster 1.2 OpenAPI documents, as published.
var (
	//go:embed openapi/onerosterv1p2rostersservice_openapi3_v1p0.json
	RosteringOpenAPI []byte
	//go:embed openapi/onerosterv1p2gradebookservice_openapi3_v1p0.json
	GradebookOpenAPI []byte
)
