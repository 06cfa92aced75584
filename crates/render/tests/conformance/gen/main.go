// Command gen runs every case of the conformance table through Go's own
// text/template and writes what Go produced (output or error text), so the
// Rust engine can be diffed against Go byte for byte without Go installed.
//
// Standard library only. Run from the repository root:
//
//	GOTOOLCHAIN=local GOPROXY=off GOFLAGS= go run crates/render/tests/conformance/gen/main.go \
//	    crates/render/tests/conformance/cases.txt crates/render/tests/conformance/expected.json
//
// (scripts/conformance-gen does exactly this.)
//
// The case format (shared with the Rust test's reader):
//
//	=== NAME
//	opts: left=[[ right=]] missingkey=error ints exec=NAME   (optional line)
//	data: JSON                                               (optional line)
//	---
//	TEMPLATE TEXT (up to the newline before the next line starting with "=== ")
//
// JSON data decodes as encoding/json decodes into interface{}: objects to
// map[string]interface{}, arrays to []interface{}, numbers to float64; with
// the "ints" option, integral numbers become int instead.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/template"
)

type testCase struct {
	Name     string
	Opts     map[string]string
	Data     string
	Template string
}

type result struct {
	Name   string  `json:"name"`
	Output *string `json:"output,omitempty"`
	Error  *string `json:"error,omitempty"`
}

type header struct {
	GoVersion string   `json:"go_version"`
	Cases     []result `json:"cases"`
}

func parseCases(text string) ([]testCase, error) {
	var cases []testCase
	// Every template ends where the next "\n=== " begins; the file's own
	// final newline is not part of the last template.
	text = strings.TrimSuffix(text, "\n")
	blocks := strings.Split("\n"+text, "\n=== ")
	for _, b := range blocks[1:] {
		lines := strings.Split(b, "\n")
		c := testCase{Name: lines[0], Opts: map[string]string{}}
		i := 1
		for ; i < len(lines) && lines[i] != "---"; i++ {
			line := lines[i]
			switch {
			case strings.HasPrefix(line, "opts: "):
				for _, f := range strings.Fields(line[len("opts: "):]) {
					k, v, _ := strings.Cut(f, "=")
					c.Opts[k] = v
				}
			case strings.HasPrefix(line, "data: "):
				c.Data = line[len("data: "):]
			default:
				return nil, fmt.Errorf("case %q: unknown line %q", c.Name, line)
			}
		}
		if i == len(lines) {
			return nil, fmt.Errorf("case %q has no --- line", c.Name)
		}
		c.Template = strings.Join(lines[i+1:], "\n")
		cases = append(cases, c)
	}
	return cases, nil
}

// intify turns integral json.Numbers into int and the others into float64.
func intify(v interface{}) interface{} {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case []interface{}:
		for i := range x {
			x[i] = intify(x[i])
		}
	case map[string]interface{}:
		for k := range x {
			x[k] = intify(x[k])
		}
	}
	return v
}

func decode(c testCase) (interface{}, error) {
	if c.Data == "" {
		return nil, nil
	}
	d := json.NewDecoder(strings.NewReader(c.Data))
	_, ints := c.Opts["ints"]
	if ints {
		d.UseNumber()
	}
	var v interface{}
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if ints {
		v = intify(v)
	}
	return v, nil
}

// Functions the Rust test defines identically (see conformance.rs).
var funcs = template.FuncMap{
	"fail": func(args ...interface{}) (interface{}, error) { return nil, errors.New("boom") },
	"list": func(args ...interface{}) []interface{} { return args },
	"dict": func(kv ...interface{}) map[string]interface{} {
		m := map[string]interface{}{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
	"str": func(args ...interface{}) string { return fmt.Sprint(args...) },
}

func run(c testCase) result {
	r := result{Name: c.Name}
	fail := func(err error) result {
		s := err.Error()
		r.Error = &s
		return r
	}
	data, err := decode(c)
	if err != nil {
		panic(fmt.Sprintf("case %s: bad data: %v", c.Name, err))
	}
	t := template.New("t").Delims(c.Opts["left"], c.Opts["right"]).Funcs(funcs)
	if mk, ok := c.Opts["missingkey"]; ok {
		t = t.Option("missingkey=" + mk)
	}
	t, err = t.Parse(c.Template)
	if err != nil {
		return fail(err)
	}
	var out bytes.Buffer
	if name, ok := c.Opts["exec"]; ok {
		err = t.ExecuteTemplate(&out, name, data)
	} else {
		err = t.Execute(&out, data)
	}
	if err != nil {
		return fail(err)
	}
	s := out.String()
	r.Output = &s
	return r
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gen CASES.txt EXPECTED.json")
		os.Exit(2)
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	cases, err := parseCases(string(text))
	if err != nil {
		panic(err)
	}
	seen := map[string]bool{}
	h := header{GoVersion: runtime.Version()}
	for _, c := range cases {
		if seen[c.Name] {
			panic("duplicate case name " + c.Name)
		}
		seen[c.Name] = true
		h.Cases = append(h.Cases, run(c))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(h); err != nil {
		panic(err)
	}
	if err := os.WriteFile(os.Args[2], buf.Bytes(), 0o644); err != nil {
		panic(err)
	}
	fmt.Printf("%d cases, %s\n", len(h.Cases), h.GoVersion)
}
