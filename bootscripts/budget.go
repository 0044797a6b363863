package bootscripts

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// Bounds on one render of a user template (a profile's own installer config).
// Go's text/template cannot be interrupted from outside, so the bounds are
// enforced from inside: parseConfig refuses what cannot be bounded and
// rewrites the tree so every loop pays before it runs; the template's
// functions and its writer check the budget and the clock, and the first
// error stops the render. The built-in templates are trusted and render
// without these bounds.
const (
	// maxOps bounds the template nodes one render may execute: a range pays
	// len × (its body's node count) before its first iteration, a call of a
	// {{define}}d template its node count, a function call one.
	maxOps = 100_000
	// maxAlloc bounds the bytes the template's functions may build in one
	// render, each call's worst case charged before it runs.
	maxAlloc = 4 << 20
	// maxRangeDepth bounds nested range actions.
	maxRangeDepth = 4
	// maxRangeInt is the largest integer literal a range may count to.
	maxRangeInt = 1000
	// maxPad is the largest width or precision a printf verb may ask for.
	maxPad = 64
	// maxSource bounds a user template's source.
	maxSource = maxConfig
	// renderTimeout bounds the wall time of one render (and the wait for a
	// render slot).
	renderTimeout = 2 * time.Second
	// maxRenders is how many user templates render at once, process-wide,
	// so a burst of boots or saves cannot pin every core.
	maxRenders = 4
	// tooBig saturates size estimates (no int overflow).
	tooBig = 1 << 40
)

// Internal functions parseConfig inserts into a user template; a template
// that names them itself is refused.
const (
	rangeFunc = "_bootpilot_range" // {{range PIPE | _bootpilot_range W}}: pay len(PIPE) × W
	tickFunc  = "_bootpilot_tick"  // first action of every range body: check the clock
	enterFunc = "_bootpilot_enter" // first action of every {{define}}d template: pay its weight
)

// refusedFuncs are the built-in template functions user templates may not
// call: their results are not bounded (html, js, urlquery grow their input
// up to 6×, and the budget cannot see inside them) or they call arbitrary
// functions (call).
var refusedFuncs = map[string]bool{
	"html": true, "js": true, "urlquery": true, "call": true,
	rangeFunc: true, tickFunc: true, enterFunc: true,
}

// ErrBusy is returned when maxRenders user templates have been rendering for
// the whole wait; the caller answers 503 and the client retries.
var ErrBusy = errors.New("bootscripts: too many installer configs rendering at once")

// BudgetError reports a user template that exceeds, or could exceed, a
// render bound. Its message names the bound and never a value, so it may go
// into audit events.
type BudgetError struct {
	Reason string // "more than 100000 template operations"
}

func (e *BudgetError) Error() string { return "template exceeds its render budget: " + e.Reason }

func overBudget(format string, args ...any) error {
	return &BudgetError{Reason: fmt.Sprintf(format, args...)}
}

// renders holds one token per user template rendering now.
var renders = make(chan struct{}, maxRenders)

// renderWait is how long a render waits for a slot (a variable for tests).
var renderWait = renderTimeout

// acquire waits for a render slot until ctx ends or renderWait passes.
func acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-renders }
	select {
	case renders <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(renderWait)
	defer t.Stop()
	select {
	case renders <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("bootscripts: waiting to render: %w", ctx.Err())
	case <-t.C:
		return nil, ErrBusy
	}
}

// budget is what one render of a user template may still spend. A render
// runs on one goroutine, so it needs no lock.
type budget struct {
	ctx      context.Context
	now      func() time.Time
	deadline time.Time
	ops      int // spent
	alloc    int // spent
}

func newBudget(ctx context.Context, now func() time.Time) *budget {
	return &budget{ctx: ctx, now: now, deadline: now().Add(renderTimeout)}
}

// check fails once the render's context has ended or its deadline passed.
func (b *budget) check() error {
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("bootscripts: render abandoned: %w", err)
	}
	if b.now().After(b.deadline) {
		return overBudget("rendering took longer than %v", renderTimeout)
	}
	return nil
}

// spend charges ops template operations and n bytes, then checks the clock.
// Negative amounts are overflowed estimates and always too much.
func (b *budget) spend(ops, n int) error {
	if ops < 0 || ops > maxOps-b.ops {
		return overBudget("more than %d template operations", maxOps)
	}
	if n < 0 || n > maxAlloc-b.alloc {
		return overBudget("its functions would build more than %d MiB", maxAlloc>>20)
	}
	b.ops += ops
	b.alloc += n
	return b.check()
}

// rangeOver pays for a range over v whose body executes weight nodes, and
// passes v on unchanged.
func (b *budget) rangeOver(weight int, v any) (any, error) {
	if weight < 1 {
		return nil, errors.New("bad range weight")
	}
	n, err := rangeLen(reflect.ValueOf(v))
	if err != nil {
		return nil, err
	}
	if n > int64(maxOps/weight) {
		return nil, overBudget("a range of %d iterations over more than %d template operations", n, maxOps)
	}
	return v, b.spend(int(n)*weight, 0)
}

// rangeLen is how many times range iterates over v. Only what a range over
// data needs is allowed: slices, arrays, maps and integers.
func rangeLen(v reflect.Value) (int64, error) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return 0, nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Invalid:
		return 0, nil
	case reflect.Slice, reflect.Array, reflect.Map:
		return int64(v.Len()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return max(v.Int(), 0), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return int64(min(v.Uint(), tooBig)), nil
	}
	return 0, fmt.Errorf("range over a %s is not allowed in installer configs", v.Type())
}

// userFuncs are the functions of a user template, each charged to b. print,
// printf and println replace the built-ins: their worst-case result is
// charged before they run, and printf refuses unbounded padding.
func userFuncs(b *budget) template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			if err := b.spend(1, 6*textSize(reflect.ValueOf(v), 0, 0)+2); err != nil {
				return "", err
			}
			return jsonString(v)
		},
		"join": func(elems []string, sep string) (string, error) {
			n := len(sep) * max(len(elems)-1, 0)
			for _, e := range elems {
				n += len(e)
			}
			if err := b.spend(1, n); err != nil {
				return "", err
			}
			return strings.Join(elems, sep), nil
		},
		"lines": func(s string) ([]string, error) {
			if err := b.spend(1, 16*(strings.Count(s, "\n")+1)); err != nil { // a string header per line
				return nil, err
			}
			return splitLines(s), nil
		},
		"print": func(args ...any) (string, error) {
			if err := b.spend(1, printSize(args)); err != nil {
				return "", err
			}
			return fmt.Sprint(args...), nil
		},
		"println": func(args ...any) (string, error) {
			if err := b.spend(1, printSize(args)+1); err != nil {
				return "", err
			}
			return fmt.Sprintln(args...), nil
		},
		"printf": func(format string, args ...any) (string, error) {
			n, err := printfSize(format, args)
			if err != nil {
				return "", err
			}
			if err := b.spend(1, n); err != nil {
				return "", err
			}
			return fmt.Sprintf(format, args...), nil
		},
		rangeFunc: b.rangeOver,
		tickFunc:  func() (string, error) { return "", b.check() },
		enterFunc: func(weight int) (string, error) {
			if weight < 1 {
				return "", errors.New("bad template weight")
			}
			return "", b.spend(weight, 0)
		},
	}
}

// printSize bounds len(fmt.Sprint(args...)): every operand, and a space
// between each.
func printSize(args []any) int {
	n := len(args)
	for _, a := range args {
		n = addSat(n, textSize(reflect.ValueOf(a), 0, 0))
	}
	return n
}

// printfSize bounds len(fmt.Sprintf(format, args...)): any verb may print
// any operand (explicit argument indexes), quoted or in hex (6×), padded to
// at most maxPad per scalar; unused operands are printed once more as
// %!(EXTRA …). A '*' width or precision, or one above maxPad, is refused.
func printfSize(format string, args []any) (int, error) {
	verbs, err := countVerbs(format)
	if err != nil {
		return 0, err
	}
	largest, all := 0, 0
	for _, a := range args {
		s := textSize(reflect.ValueOf(a), maxPad, 0)
		largest, all = max(largest, s), addSat(all, s)
	}
	perVerb := addSat(mulSat(6, largest), 64)
	return addSat(addSat(len(format), mulSat(verbs, perVerb)), addSat(mulSat(6, all), 32*len(args))), nil
}

// countVerbs counts the verbs of a printf format and refuses padding that
// is not bounded: '*' (taken from an operand) or a number above maxPad.
func countVerbs(format string) (int, error) {
	verbs := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		verbs++
		num := 0
	spec:
		for i++; i < len(format); i++ {
			switch c := format[i]; {
			case c >= '0' && c <= '9':
				if num = num*10 + int(c-'0'); num > maxPad {
					return 0, overBudget("printf width or precision above %d", maxPad)
				}
			case c == '*':
				return 0, overBudget("printf width or precision from an operand (*)")
			case strings.IndexByte("+-# .[]", c) >= 0:
				num = 0
			default:
				break spec
			}
		}
	}
	return verbs, nil
}

// textSize bounds the bytes fmt's %v (or %+v, %#v; JSON up to 6× of it)
// prints for v, each scalar padded to pad.
func textSize(v reflect.Value, pad, depth int) int {
	if depth > 16 {
		return tooBig
	}
	switch v.Kind() {
	case reflect.Invalid:
		return max(16, pad)
	case reflect.String:
		return max(v.Len(), pad)
	case reflect.Float32, reflect.Float64:
		return max(400, pad) // %f of 1e308: 309 digits
	case reflect.Complex64, reflect.Complex128:
		return max(800, pad)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return max(16, pad) + len(v.Type().String())
		}
		return addSat(2+len(v.Type().String()), textSize(v.Elem(), pad, depth+1))
	case reflect.Slice, reflect.Array:
		n := 2 + len(v.Type().String())
		for i := 0; i < v.Len() && n < tooBig; i++ {
			n = addSat(n, 1+textSize(v.Index(i), pad, depth+1))
		}
		return n
	case reflect.Map:
		n := 5 + len(v.Type().String())
		for it := v.MapRange(); it.Next() && n < tooBig; {
			n = addSat(n, 2+textSize(it.Key(), pad, depth+1)+textSize(it.Value(), pad, depth+1))
		}
		return n
	case reflect.Struct:
		n := 2 + len(v.Type().String())
		for i := 0; i < v.NumField() && n < tooBig; i++ {
			n = addSat(n, 4+len(v.Type().Field(i).Name)+textSize(v.Field(i), pad, depth+1))
		}
		return n
	}
	return max(72, pad) // bool, integers (%b: 64 digits), chan, func, unsafe pointer
}

func addSat(a, b int) int { return min(a+b, tooBig) }

func mulSat(a, b int) int {
	if a != 0 && b > tooBig/a {
		return tooBig
	}
	return min(a*b, tooBig)
}

// prepare checks every template of a parsed user template set and rewrites
// it to pay for its loops: each range pays len × (its body's weight) before
// it starts and checks the clock in each iteration; each {{define}}d
// template pays its weight when it is called. It refuses the constructs the
// budget cannot see into: refused functions, ranges over large integer
// literals or nested deeper than maxRangeDepth, and templates that call
// themselves (directly or not).
func prepare(root *template.Template) error {
	calls := map[string][]string{}
	for _, t := range root.Templates() {
		if t.Tree == nil || t.Tree.Root == nil {
			continue
		}
		c := &treeCheck{}
		w, err := c.list(t.Tree.Root, 0)
		if err != nil {
			return fmt.Errorf("template %q: %w", t.Name(), err)
		}
		calls[t.Name()] = c.calls
		if t.Name() != root.Name() {
			t.Tree.Root.Nodes = append([]parse.Node{action(t.Tree.Root.Pos, enterFunc, 1+w)}, t.Tree.Root.Nodes...)
		}
	}
	return checkCycles(calls)
}

// checkCycles refuses a template that calls itself, directly or through
// others: its expansion has no bound.
func checkCycles(calls map[string][]string) error {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case visiting:
			return overBudget("template %q calls itself", name)
		case done:
			return nil
		}
		state[name] = visiting
		for _, callee := range calls[name] {
			if err := visit(callee); err != nil {
				return err
			}
		}
		state[name] = done
		return nil
	}
	for name := range calls {
		if err := visit(name); err != nil {
			return err
		}
	}
	return nil
}

// treeCheck walks one template's tree; a node's weight is the number of
// nodes executing it runs, range bodies excluded (a range pays for them).
type treeCheck struct {
	calls []string // templates called with {{template}}
}

func (c *treeCheck) list(l *parse.ListNode, depth int) (int, error) {
	if l == nil {
		return 0, nil
	}
	w := 0
	for _, n := range l.Nodes {
		nw, err := c.node(n, depth)
		if err != nil {
			return 0, err
		}
		w += nw
	}
	return w, nil
}

func (c *treeCheck) node(n parse.Node, depth int) (int, error) {
	switch n := n.(type) {
	case *parse.ActionNode:
		w, err := c.pipe(n.Pipe, depth)
		return 1 + w, err
	case *parse.IfNode:
		return c.branch(&n.BranchNode, depth)
	case *parse.WithNode:
		return c.branch(&n.BranchNode, depth)
	case *parse.RangeNode:
		return c.rangeNode(n, depth)
	case *parse.TemplateNode:
		c.calls = append(c.calls, n.Name)
		w, err := c.pipe(n.Pipe, depth)
		return 1 + w, err
	case *parse.PipeNode:
		return c.pipe(n, depth)
	case *parse.ChainNode:
		w, err := c.node(n.Node, depth)
		return 1 + w, err
	case *parse.IdentifierNode:
		if refusedFuncs[n.Ident] {
			return 0, fmt.Errorf("function %q is not available in installer configs", n.Ident)
		}
	}
	return 1, nil // text, field, variable, dot, literals, break, continue, comment
}

func (c *treeCheck) pipe(p *parse.PipeNode, depth int) (int, error) {
	if p == nil {
		return 0, nil
	}
	w := len(p.Decl)
	for _, cmd := range p.Cmds {
		w++
		for _, a := range cmd.Args {
			aw, err := c.node(a, depth)
			if err != nil {
				return 0, err
			}
			w += aw
		}
	}
	return w, nil
}

func (c *treeCheck) branch(b *parse.BranchNode, depth int) (int, error) {
	pw, err := c.pipe(b.Pipe, depth)
	if err != nil {
		return 0, err
	}
	lw, err := c.list(b.List, depth)
	if err != nil {
		return 0, err
	}
	ew, err := c.list(b.ElseList, depth)
	return 1 + pw + lw + ew, err
}

// rangeNode checks r and rewrites it: {{range PIPE | _range W}}{{_tick}}BODY.
func (c *treeCheck) rangeNode(r *parse.RangeNode, depth int) (int, error) {
	if depth >= maxRangeDepth {
		return 0, overBudget("ranges nested deeper than %d", maxRangeDepth)
	}
	if n, ok := intLiteral(r.Pipe); ok && n > maxRangeInt {
		return 0, overBudget("a range over %d (at most %d)", n, maxRangeInt)
	}
	pw, err := c.pipe(r.Pipe, depth)
	if err != nil {
		return 0, err
	}
	bw, err := c.list(r.List, depth+1)
	if err != nil {
		return 0, err
	}
	ew, err := c.list(r.ElseList, depth)
	if err != nil {
		return 0, err
	}
	r.Pipe.Cmds = append(r.Pipe.Cmds, command(r.Pos, rangeFunc, 2+bw)) // +2: the tick and the iteration
	r.List.Nodes = append([]parse.Node{action(r.Pos, tickFunc, 0)}, r.List.Nodes...)
	return 1 + pw + ew, nil
}

// intLiteral returns the integer of a pipeline that is one number literal.
func intLiteral(p *parse.PipeNode) (uint64, bool) {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return 0, false
	}
	n, ok := p.Cmds[0].Args[0].(*parse.NumberNode)
	switch {
	case !ok:
		return 0, false
	case n.IsUint:
		return n.Uint64, true
	case n.IsFloat && n.Float64 > maxRangeInt:
		return uint64(min(n.Float64, tooBig)), true
	}
	return 0, false
}

// command builds the command `name [arg]` (arg 0: none).
func command(pos parse.Pos, name string, arg int) *parse.CommandNode {
	args := []parse.Node{&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: pos, Ident: name}}
	if arg != 0 {
		args = append(args, &parse.NumberNode{NodeType: parse.NodeNumber, Pos: pos, IsInt: true, IsUint: true,
			IsFloat: true, Int64: int64(arg), Uint64: uint64(arg), Float64: float64(arg), Text: fmt.Sprint(arg)})
	}
	return &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: args}
}

// action builds the action {{name [arg]}}; the functions it calls print "".
func action(pos parse.Pos, name string, arg int) *parse.ActionNode {
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos,
		Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Cmds: []*parse.CommandNode{command(pos, name, arg)}}}
}
