// Renders an Ollama TEMPLATE with Go's text/template, as Ollama's template.Execute does for a
// template that uses .Messages: {"System": the system messages joined, "Messages": [{"Role",
// "Content"}...] (system ones included), "Response": ""}. Usage: go run render_template.go
// TEMPLATE_FILE DATA_JSON_FILE; prints one JSON string per data item (a JSON list of data).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

func main() {
	source, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("").Parse(string(source)))
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	var items []map[string]any
	if err := json.Unmarshal(raw, &items); err != nil {
		panic(err)
	}
	for _, item := range items {
		var out bytes.Buffer
		if err := tmpl.Execute(&out, item); err != nil {
			panic(err)
		}
		line, _ := json.Marshal(out.String())
		fmt.Println(string(line))
	}
}
