// render: renders a Helm chart's templates the way `helm template` does, for a machine
// without helm. It uses Go's text/template with sprig (the function library helm itself
// uses) and implements the helm built-ins the natter chart needs: include, tpl, required,
// toYaml, fromYaml, lookup (always empty: there is no cluster), .Values (values.yaml deep-
// merged with -f files, numbers as float64 like helm), .Release, .Chart, .Capabilities,
// .Template. Dependencies (subcharts) are not rendered: they are not vendored.
//
//	render -chart helm/natter [-f extra.yaml]... [-name natter] [-namespace default] -o out.yaml
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig"
	yamlv2 "gopkg.in/yaml.v2"
	yaml "gopkg.in/yaml.v3"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

type chartMeta struct {
	APIVersion   string `yaml:"apiVersion"`
	Name         string `yaml:"name"`
	Version      string `yaml:"version"`
	AppVersion   string `yaml:"appVersion"`
	Description  string `yaml:"description"`
	Type         string `yaml:"type"`
	Dependencies []struct {
		Name       string `yaml:"name"`
		Version    string `yaml:"version"`
		Repository string `yaml:"repository"`
		Condition  string `yaml:"condition"`
	} `yaml:"dependencies"`
}

// Chart is what templates see as .Chart (helm's field names).
type Chart struct {
	Name, Version, AppVersion, Description, Type, APIVersion string
}

type versionSet []string

func (v versionSet) Has(s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion struct{ Version, Major, Minor, GitVersion string }
	APIVersions versionSet
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", a...)
	os.Exit(1)
}

// loadYAML reads a YAML file into a map with JSON types (float64 numbers), as helm does
// (it converts YAML to JSON before unmarshalling values).
func loadYAML(path string) map[string]interface{} {
	b, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	return fromYAMLString(string(b), path)
}

func fromYAMLString(s, what string) map[string]interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		die("%s: %v", what, err)
	}
	if raw == nil {
		return map[string]interface{}{}
	}
	j, err := json.Marshal(raw)
	if err != nil {
		die("%s: %v", what, err)
	}
	out := map[string]interface{}{}
	if err := json.Unmarshal(j, &out); err != nil {
		die("%s: values must be a mapping: %v", what, err)
	}
	return out
}

// merge deep-merges src into dst (src wins; maps merge, everything else is replaced).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	b, err := yamlv2.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// lookupPath follows "a.b.c" in values (for dependency conditions).
func lookupPath(values map[string]interface{}, path string) interface{} {
	var cur interface{} = values
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]interface{})
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "natter", "release name")
	ns := flag.String("namespace", "default", "release namespace")
	out := flag.String("o", "-", "output file (- for stdout)")
	notes := flag.String("notes", "", "also write the rendered NOTES.txt here")
	var valueFiles files
	flag.Var(&valueFiles, "f", "values file (repeatable; later files win)")
	flag.Parse()
	if *chartDir == "" {
		die("-chart is required")
	}

	var meta chartMeta
	mb, err := os.ReadFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		die("%v", err)
	}
	if err := yaml.Unmarshal(mb, &meta); err != nil {
		die("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		die("Chart.yaml needs apiVersion v2, name and version")
	}
	values := loadYAML(filepath.Join(*chartDir, "values.yaml"))
	for _, f := range valueFiles {
		values = merge(values, loadYAML(f))
	}

	caps := capabilities{APIVersions: versionSet{"v1", "apps/v1", "policy/v1", "autoscaling/v2",
		"networking.k8s.io/v1", "monitoring.coreos.com/v1"}}
	caps.KubeVersion.Version, caps.KubeVersion.Major, caps.KubeVersion.Minor = "v1.29.0", "1", "29"
	caps.KubeVersion.GitVersion = "v1.29.0"
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{"Name": *name, "Namespace": *ns, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart": Chart{Name: meta.Name, Version: meta.Version, AppVersion: meta.AppVersion,
			Description: meta.Description, Type: meta.Type, APIVersion: meta.APIVersion},
		"Capabilities": caps,
	}

	// Templates are named like helm names them: <chart>/templates/<file>.
	tdir := filepath.Join(*chartDir, "templates")
	entries, err := os.ReadDir(tdir)
	if err != nil {
		die("%v", err)
	}
	var names []string
	root := template.New("root").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env") // helm removes these two
	delete(funcs, "expandenv")
	funcs["include"] = func(n string, data interface{}) (string, error) {
		var b bytes.Buffer
		err := root.ExecuteTemplate(&b, n, data)
		return b.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		if t, err = t.New("tpl").Parse(text); err != nil {
			return "", err
		}
		var b bytes.Buffer
		err = t.Execute(&b, data)
		return b.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} { return fromYAMLString(s, "fromYaml") }
	funcs["lookup"] = func(apiVersion, kind, namespace, n string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	root.Funcs(funcs)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		b, err := os.ReadFile(filepath.Join(tdir, n))
		if err != nil {
			die("%v", err)
		}
		full := meta.Name + "/templates/" + n
		if _, err := root.New(full).Parse(string(b)); err != nil {
			die("parse %s: %v", full, err)
		}
		names = append(names, n)
	}
	sort.Strings(names)

	render := func(n string) string {
		full := meta.Name + "/templates/" + n
		top["Template"] = map[string]interface{}{"Name": full, "BasePath": meta.Name + "/templates"}
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, full, top); err != nil {
			die("render %s: %v", full, err)
		}
		return strings.ReplaceAll(b.String(), "<no value>", "")
	}

	var doc strings.Builder
	count := 0
	for _, n := range names {
		if strings.HasPrefix(n, "_") || n == "NOTES.txt" {
			continue
		}
		s := render(n)
		if strings.TrimSpace(s) == "" {
			continue
		}
		fmt.Fprintf(&doc, "---\n# Source: %s/templates/%s\n%s\n", meta.Name, n, strings.Trim(s, "\n"))
		count++
	}
	for _, d := range meta.Dependencies {
		if on, _ := lookupPath(values, d.Condition).(bool); on {
			fmt.Fprintf(os.Stderr, "render: dependency %s (%s %s) is enabled: its objects are "+
				"not rendered here (not vendored)\n", d.Name, d.Repository, d.Version)
		}
	}
	if *notes != "" {
		if err := os.WriteFile(*notes, []byte(render("NOTES.txt")), 0o644); err != nil {
			die("%v", err)
		}
	}
	if *out == "-" {
		fmt.Print(doc.String())
	} else if err := os.WriteFile(*out, []byte(doc.String()), 0o644); err != nil {
		die("%v", err)
	}
	fmt.Fprintf(os.Stderr, "render: %d manifests\n", count)
}
