// Renders Ollama TEMPLATEs with Go's own text/template, given the data Ollama's
// template.Execute passes a template that uses .Messages: "System" (the system messages
// joined), "Messages" (each with "Role" and "Content", system ones included) and "Response".
//
// Usage: go run render_template.go CASES.json, where CASES.json is a list of
// {"template": "...", "data": [{...}, ...]}; prints a JSON list with, for each case, the list
// of rendered texts.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

type renderCase struct {
	Template string           `json:"template"`
	Data     []map[string]any `json:"data"`
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var cases []renderCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		panic(err)
	}
	results := [][]string{}
	for _, c := range cases {
		tmpl := template.Must(template.New("").Parse(c.Template))
		texts := []string{}
		for _, data := range c.Data {
			var out bytes.Buffer
			if err := tmpl.Execute(&out, data); err != nil {
				panic(err)
			}
			texts = append(texts, out.String())
		}
		results = append(results, texts)
	}
	encoded, err := json.Marshal(results)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(encoded))
}
