package vet

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
)

// WriteText writes one line per finding and a closing count.
func WriteText(w io.Writer, fs []Finding) error {
	errs, warns := 0, 0
	for _, f := range fs {
		if f.Severity == Error {
			errs++
		} else {
			warns++
		}
		if _, err := fmt.Fprintln(w, f.String()); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d errors, %d warnings\n", errs, warns)
	return err
}

// WriteJSON writes the findings as a JSON array.
func WriteJSON(w io.Writer, fs []Finding) error {
	if fs == nil {
		fs = []Finding{}
	}
	report := jsonReport{Tool: "drainwell", Version: toolVersion(), Findings: fs}
	for _, f := range fs {
		if f.Severity == Error {
			report.Summary.Errors++
		} else {
			report.Summary.Warnings++
		}
	}
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(report)
}

// jsonReport is --format json's document: stable, fields only added.
type jsonReport struct {
	Tool     string    `json:"tool"`
	Version  string    `json:"version"`
	Findings []Finding `json:"findings"`
	Summary  struct {
		Errors   int `json:"errors"`
		Warnings int `json:"warnings"`
	} `json:"summary"`
}

// SARIF 2.1.0, the parts code-scanning reads: the tool with its rules, and
// one result per finding at its file and line.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string       `json:"id"`
	ShortDescription     sarifMessage `json:"shortDescription"`
	FullDescription      sarifMessage `json:"fullDescription"`
	DefaultConfiguration struct {
		Level string `json:"level"`
	} `json:"defaultConfiguration"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation struct {
		ArtifactLocation struct {
			URI string `json:"uri"`
		} `json:"artifactLocation"`
		Region *sarifRegion `json:"region,omitempty"`
	} `json:"physicalLocation"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// WriteSARIF writes the findings as a SARIF 2.1.0 log.
func WriteSARIF(w io.Writer, fs []Finding) error {
	all := Rules()
	index := map[string]int{}
	driver := sarifDriver{Name: "drainwell", Version: toolVersion(), InformationURI: "https://github.com/drainwell/drainwell"}
	for i, r := range all {
		index[r.Name] = i
		sr := sarifRule{ID: r.Name, ShortDescription: sarifMessage{r.Summary}, FullDescription: sarifMessage{r.Explain}}
		sr.DefaultConfiguration.Level = level(r.Severity)
		driver.Rules = append(driver.Rules, sr)
	}
	run := sarifRun{Tool: sarifTool{Driver: driver}, Results: []sarifResult{}}
	for _, f := range fs {
		res := sarifResult{RuleID: f.Rule, RuleIndex: index[f.Rule], Level: level(f.Severity)}
		obj := f.Object
		if f.Container != "" {
			obj += " container " + f.Container
		}
		res.Message.Text = fmt.Sprintf("%s %s: %s; fix: %s", obj, f.Field, f.Message, f.Fix)
		var loc sarifLocation
		loc.PhysicalLocation.ArtifactLocation.URI = f.File
		if f.Line > 0 {
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.Line}
		}
		res.Locations = []sarifLocation{loc}
		run.Results = append(run.Results, res)
	}
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}

func level(s Severity) string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// toolVersion is the drainwell module's version in this build: the tag a
// `go install ...@vX.Y.Z` built, or "(devel)".
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if bi.Main.Path == "github.com/drainwell/drainwell/cmd/drainwell" && bi.Main.Version != "" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/drainwell/drainwell/cmd/drainwell" {
			return d.Version
		}
	}
	return "(devel)"
}
