// Prints, for each JSON line on stdin, what consul-template's toYAML
// (gopkg.in/yaml.v2) and toTOML (github.com/BurntSushi/toml) print for
// the value Go's encoding/json decodes from it. Offline, from Debian's
// golang-gopkg-yaml.v2-dev and golang-github-burntsushi-toml-dev:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go run main.go < ../cases.jsonl > ../expected.txt
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v2"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v interface{}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			panic(err)
		}
		y, err := yaml.Marshal(v)
		if err != nil {
			panic(err)
		}
		fmt.Printf("=== yaml\n%s\n", strings.TrimSpace(string(y)))
		var b bytes.Buffer
		if err := toml.NewEncoder(&b).Encode(v); err != nil {
			panic(err)
		}
		fmt.Printf("=== toml\n%s\n", strings.TrimSpace(b.String()))
	}
}
