package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// obj and list are the JSON shapes of IAM, KMS, S3 and EFS policy documents. Leaves are
// plain strings (or other JSON values) or pulumi.StringOutput, which toJSON resolves.
type (
	obj  = map[string]any
	list = []any
)

// policy returns an IAM policy document with the given statements.
func policy(statements ...obj) obj {
	st := make(list, len(statements))
	for i, s := range statements {
		st[i] = s
	}
	return obj{"Version": "2012-10-17", "Statement": st}
}

// strs turns plain strings and outputs into a list for Action/Resource fields.
func strs(vs ...any) list { return list(vs) }

// toJSON serializes v once every pulumi.StringOutput inside it has resolved. Keys are
// visited in sorted order, so the order of outputs is the same in both passes.
func toJSON(v any) pulumi.StringOutput {
	var outs []any
	collectOutputs(v, &outs)
	return pulumi.All(outs...).ApplyT(func(vals []any) (string, error) {
		i := 0
		resolved, err := substituteOutputs(v, vals, &i)
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(resolved)
		if err != nil {
			return "", fmt.Errorf("policy json: %w", err)
		}
		return string(b), nil
	}).(pulumi.StringOutput)
}

func sortedKeys(m obj) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func collectOutputs(v any, outs *[]any) {
	switch t := v.(type) {
	case pulumi.StringOutput:
		*outs = append(*outs, t)
	case obj:
		for _, k := range sortedKeys(t) {
			collectOutputs(t[k], outs)
		}
	case list:
		for _, e := range t {
			collectOutputs(e, outs)
		}
	case []obj:
		for _, e := range t {
			collectOutputs(e, outs)
		}
	}
}

func substituteOutputs(v any, vals []any, i *int) (any, error) {
	switch t := v.(type) {
	case pulumi.StringOutput:
		s, ok := vals[*i].(string)
		if !ok {
			return nil, fmt.Errorf("policy json: output %d resolved to %T, want string", *i, vals[*i])
		}
		*i++
		return s, nil
	case obj:
		m := make(map[string]any, len(t))
		for _, k := range sortedKeys(t) {
			r, err := substituteOutputs(t[k], vals, i)
			if err != nil {
				return nil, err
			}
			m[k] = r
		}
		return m, nil
	case list:
		l := make([]any, len(t))
		for j, e := range t {
			r, err := substituteOutputs(e, vals, i)
			if err != nil {
				return nil, err
			}
			l[j] = r
		}
		return l, nil
	case []obj:
		l := make([]any, len(t))
		for j, e := range t {
			r, err := substituteOutputs(e, vals, i)
			if err != nil {
				return nil, err
			}
			l[j] = r
		}
		return l, nil
	default:
		return v, nil
	}
}
