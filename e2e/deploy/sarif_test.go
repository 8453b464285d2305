package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/drainwell/drainwell/cmd/drainwell/vet"
)

// drainwell vet's SARIF validates against the SARIF 2.1.0 JSON schema
// (make test fetches it: SARIF_SCHEMA); a log with a result that lacks its
// message does not (the control).
func TestSARIFSchema(t *testing.T) {
	path := os.Getenv("SARIF_SCHEMA")
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SARIF_SCHEMA is not set: make test fetches the schema")
		}
		t.Skip("SARIF_SCHEMA not set (make test sets it)")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("sarif.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("sarif.json")
	if err != nil {
		t.Fatal(err)
	}
	set, err := vet.Load([]string{"../../cmd/drainwell/vet/testdata/corpus"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	findings := vet.Check(set, vet.Options{})
	var out bytes.Buffer
	if err := vet.WriteSARIF(&out, findings); err != nil {
		t.Fatal(err)
	}
	validate := func(b []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		return schema.Validate(v)
	}
	if err := validate(out.Bytes()); err != nil {
		t.Fatalf("drainwell vet's SARIF (%d results) does not validate: %v", len(findings), err)
	}
	// The control: drop every result's message.
	var log map[string]any
	if err := json.Unmarshal(out.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	driver := log["runs"].([]any)[0].(map[string]any)["tool"].(map[string]any)["driver"].(map[string]any)
	if v, _ := driver["version"].(string); v == "" {
		t.Fatalf("SARIF's tool.driver has no version: %v", driver)
	}
	for _, r := range log["runs"].([]any)[0].(map[string]any)["results"].([]any) {
		delete(r.(map[string]any), "message")
	}
	broken, _ := json.Marshal(log)
	if err := validate(broken); err == nil || !strings.Contains(err.Error(), "message") {
		t.Fatalf("a result without its message validates: %v", err)
	}
}
