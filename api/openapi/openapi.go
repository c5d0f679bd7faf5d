// Package openapi holds the OpenAPI 3.1 description of the public API.
package openapi

import _ "embed"

// Spec is openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte
