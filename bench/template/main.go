// Command template is the Go side of `shoal-bench template`: it renders the
// same template over the same JSON data with Go's own text/template and
// prints the timings as one JSON line, so the benchmark can show the ratio.
// Standard library only; run with `go run` (GO111MODULE=off, offline).
//
//	go run bench/template/main.go TEMPLATE DATA.json RUNS OUT
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"text/template"
	"time"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: template TEMPLATE DATA.json RUNS OUT")
		os.Exit(2)
	}
	text, err := os.ReadFile(os.Args[1])
	check(err)
	raw, err := os.ReadFile(os.Args[2])
	check(err)
	runs, err := strconv.Atoi(os.Args[3])
	check(err)
	var data interface{}
	check(json.Unmarshal(raw, &data))

	start := time.Now()
	t, err := template.New("bench").Parse(string(text))
	check(err)
	parse := time.Since(start)

	var samples []time.Duration
	var out bytes.Buffer
	for i := 0; i < runs; i++ {
		out.Reset()
		start := time.Now()
		check(t.Execute(&out, data))
		samples = append(samples, time.Since(start))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	check(os.WriteFile(os.Args[4], out.Bytes(), 0o644))
	line, _ := json.Marshal(map[string]int64{
		"parse_ns":  parse.Nanoseconds(),
		"median_ns": samples[len(samples)/2].Nanoseconds(),
		"min_ns":    samples[0].Nanoseconds(),
		"bytes":     int64(out.Len()),
	})
	fmt.Println(string(line))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
