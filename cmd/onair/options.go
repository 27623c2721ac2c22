package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// errUsage is a configuration error: one line on stderr, exit 2.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

// errHelp asks for the usage on stdout and exit 0.
var errHelp = errors.New("help")

// options is a flag set where every flag may also come from an environment
// variable; the flag wins. Values are kept as text and converted by the
// typed getters, so a malformed value is reported naming both spellings.
type options struct {
	name     string
	summary  string
	fs       *flag.FlagSet
	getenv   func(string) string
	specs    []*optSpec
	explicit map[string]bool
}

type optSpec struct {
	flag, env, def, usage string
	value                 string
	isBool                bool
}

func newOptions(name, summary string, getenv func(string) string) *options {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &options{name: name, summary: summary, fs: fs, getenv: getenv, explicit: map[string]bool{}}
}

// add declares a text option. env may be "" for flag-only options.
func (o *options) add(flagName, env, def, usage string) *optSpec {
	sp := &optSpec{flag: flagName, env: env, def: def, usage: usage, value: def}
	o.specs = append(o.specs, sp)
	o.fs.Func(flagName, usage, func(v string) error { sp.value = v; return nil })
	return sp
}

// addBool declares a boolean option (--name or --name=false).
func (o *options) addBool(flagName, env, usage string) *optSpec {
	sp := &optSpec{flag: flagName, env: env, def: "false", usage: usage, value: "false", isBool: true}
	o.specs = append(o.specs, sp)
	o.fs.BoolFunc(flagName, usage, func(v string) error { sp.value = v; return nil })
	return sp
}

// parse applies the environment, then the flags.
func (o *options) parse(args []string) error {
	for _, sp := range o.specs {
		if sp.env == "" {
			continue
		}
		if v, ok := lookup(o.getenv, sp.env); ok {
			sp.value = v
			o.explicit[sp.flag] = true
		}
	}
	if err := o.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage{strings.TrimSpace(err.Error())}
	}
	if o.fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", o.fs.Arg(0))
	}
	o.fs.Visit(func(f *flag.Flag) { o.explicit[f.Name] = true })
	return nil
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func (sp *optSpec) name() string {
	if sp.env == "" {
		return "--" + sp.flag
	}
	return "--" + sp.flag + "/" + sp.env
}

func (sp *optSpec) str() string { return strings.TrimSpace(sp.value) }

func (sp *optSpec) duration() (time.Duration, error) {
	d, err := time.ParseDuration(sp.str())
	if err != nil || d < 0 {
		return 0, usageErrorf("%s: %q is not a duration (e.g. 5s, 2m)", sp.name(), sp.value)
	}
	return d, nil
}

func (sp *optSpec) positiveInt() (int, error) {
	n, err := strconv.Atoi(sp.str())
	if err != nil || n <= 0 {
		return 0, usageErrorf("%s: %q is not a positive whole number", sp.name(), sp.value)
	}
	return n, nil
}

func (sp *optSpec) nonNegativeInt() (int, error) {
	n, err := strconv.Atoi(sp.str())
	if err != nil || n < 0 {
		return 0, usageErrorf("%s: %q is not 0 or a positive whole number", sp.name(), sp.value)
	}
	return n, nil
}

func (sp *optSpec) boolean() (bool, error) {
	b, err := strconv.ParseBool(sp.str())
	if err != nil {
		return false, usageErrorf("%s: %q is not true or false", sp.name(), sp.value)
	}
	return b, nil
}

// list splits a comma-separated value, dropping empty items.
func (sp *optSpec) list() []string {
	var out []string
	for _, item := range strings.Split(sp.value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// secrets splits a comma-separated list of secrets. A secret is the raw
// bytes of its text: nothing is trimmed, only empty items are dropped.
func (sp *optSpec) secrets() [][]byte {
	var out [][]byte
	for _, s := range strings.Split(sp.value, ",") {
		if s != "" {
			out = append(out, []byte(s))
		}
	}
	return out
}

// usage writes the help text.
func (o *options) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nOptions (a flag wins over its environment variable):\n", o.summary)
	for _, sp := range o.specs {
		arg := " VALUE"
		if sp.isBool {
			arg = ""
		}
		fmt.Fprintf(w, "  --%s%s", sp.flag, arg)
		if sp.env != "" {
			fmt.Fprintf(w, "  (env %s)", sp.env)
		}
		fmt.Fprintf(w, "\n      %s", sp.usage)
		if sp.def != "" && !sp.isBool {
			fmt.Fprintf(w, " (default %q)", sp.def)
		}
		fmt.Fprintln(w)
	}
}
