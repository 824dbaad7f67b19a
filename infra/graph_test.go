package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// The only network paths of the system. Ingress edges are "from->to:port"; the gateway
// reaches the NLB only through the VPC link (PrivateLink), which is why the NLB's group
// has no ingress rule at all.
var (
	wantIngress = []string{
		"alb->tasks:8443",
		"nlb->alb:443",
		"tasks->cache:6379",
		"tasks->database:5432",
		"tasks->endpoints:443",
		"tasks->files:2049",
	}
	// Egress mirrors ingress, plus the tasks' HTTPS to the internet (through NAT) for
	// the district's OIDC issuer.
	wantEgress = append(append([]string{}, wantIngress...), "tasks->0.0.0.0/0:443")
	// Which group each kind of resource sits in.
	wantAttachments = map[string]string{
		"alb":       "alb",
		"nlb":       "nlb",
		"service":   "tasks",
		"db":        "database",
		"cache":     "cache",
		"mount":     "files",
		"endpoints": "endpoints",
	}
)

// sgGraph describes the security-group graph of a stack and compares it with the
// intended one.
func sgGraph(s *stack) (f findings) {
	tier := map[string]string{} // group ID -> tier
	for _, g := range s.of(tSG) {
		tier[g.ID] = strings.TrimPrefix(g.Name, "sg-")
		if len(g.arr("ingress")) > 0 || len(g.arr("egress")) > 0 {
			f.add("group %s has inline rules", g.Name)
		}
	}
	var ingress, egress []string
	for _, r := range s.of(tSGRule) {
		from, to := tier[r.str("securityGroupId")], ""
		if peer := r.str("sourceSecurityGroupId"); peer != "" {
			to = tier[peer]
			if to == "" {
				f.add("rule %s refers to a group outside the stack: %s", r.Name, peer)
			}
		} else {
			to = strings.Join(stringsOf(r.In["cidrBlocks"]), ",") + strings.Join(stringsOf(r.In["ipv6CidrBlocks"]), ",") + strings.Join(stringsOf(r.In["prefixListIds"]), ",")
		}
		if r.str("protocol") != "tcp" || r.num("fromPort") != r.num("toPort") {
			f.add("rule %s: protocol %q ports %v-%v, want one TCP port", r.Name, r.str("protocol"), r.num("fromPort"), r.num("toPort"))
		}
		port := int(r.num("fromPort"))
		switch r.str("type") {
		case "ingress":
			ingress = append(ingress, fmt.Sprintf("%s->%s:%d", to, from, port))
		case "egress":
			egress = append(egress, fmt.Sprintf("%s->%s:%d", from, to, port))
		}
	}
	sort.Strings(ingress)
	sort.Strings(egress)
	want := append([]string{}, wantEgress...)
	sort.Strings(want)
	if strings.Join(ingress, " ") != strings.Join(wantIngress, " ") {
		f.add("ingress edges:\n got  %v\n want %v", ingress, wantIngress)
	}
	if strings.Join(egress, " ") != strings.Join(want, " ") {
		f.add("egress edges:\n got  %v\n want %v", egress, want)
	}

	attached := func(kind string, r *res, ids []any) {
		if len(ids) != 1 || tier[fmt.Sprint(ids[0])] != wantAttachments[kind] {
			var got []string
			for _, id := range ids {
				got = append(got, tier[fmt.Sprint(id)])
			}
			f.add("%s %s is in groups %v, want [%s]", kind, r.Name, got, wantAttachments[kind])
		}
	}
	for _, lb := range s.of(tLB) {
		if !lb.flag("internal") {
			f.add("load balancer %s is not internal", lb.Name)
		}
		attached(lb.Name, lb, lb.arr("securityGroups"))
	}
	for _, svc := range s.of(tService) {
		attached("service", svc, path(svc.In, "networkConfiguration.securityGroups").([]any))
	}
	for _, c := range s.of(tDBCluster) {
		attached("db", c, c.arr("vpcSecurityGroupIds"))
	}
	for _, c := range s.of(tCache) {
		attached("cache", c, c.arr("securityGroupIds"))
	}
	for _, m := range s.of(tMountTarget) {
		attached("mount", m, m.arr("securityGroups"))
	}
	for _, e := range s.of(tEndpoint) {
		if e.str("vpcEndpointType") == "Interface" {
			attached("endpoints", e, e.arr("securityGroupIds"))
		}
	}
	// The gateway's only way in is the VPC link to the NLB, which admits no other
	// traffic.
	nlb := s.byName(tLB, "nlb")
	links := s.of(tVPCLink)
	if nlb == nil || len(links) != 1 || links[0].str("targetArn") != nlb.outStr("arn") {
		f.add("the VPC link must target the NLB")
	}
	if nlb != nil && nlb.str("enforceSecurityGroupInboundRulesOnPrivateLinkTraffic") != "off" {
		f.add("the NLB must admit the VPC link's PrivateLink traffic without any ingress rule")
	}
	for _, in := range s.of(tIntegration) {
		if in.str("connectionType") != "VPC_LINK" || in.str("connectionId") != links[0].ID {
			f.add("integration %s does not go through the VPC link", in.Name)
		}
	}
	return
}

func TestSecurityGroupGraph(t *testing.T) {
	for _, name := range examples {
		t.Run(name+": only gateway -> NLB -> ALB -> tasks -> {database, cache, EFS, endpoints}, one port each", func(t *testing.T) {
			s := deployExample(t, name)
			for _, v := range sgGraph(s) {
				t.Error(v)
			}
		})
		t.Run(name+": a path around the chain is found", func(t *testing.T) {
			for what, breakIt := range map[string]func(*stack){
				"ALB straight to the database": func(s *stack) {
					s.add(tSGRule, "sgr-extra", map[string]any{"type": "ingress", "securityGroupId": "sg-database-id",
						"sourceSecurityGroupId": "sg-alb-id", "protocol": "tcp", "fromPort": 5432.0, "toPort": 5432.0})
				},
				"cache in the tasks' group": func(s *stack) { s.of(tCache)[0].In["securityGroupIds"] = []any{"sg-tasks-id"} },
				"a public ALB":              func(s *stack) { s.byName(tLB, "alb").In["internal"] = false },
				"an all-ports rule": func(s *stack) {
					s.add(tSGRule, "sgr-all", map[string]any{"type": "egress", "securityGroupId": "sg-tasks-id",
						"sourceSecurityGroupId": "sg-cache-id", "protocol": "-1", "fromPort": 0.0, "toPort": 65535.0})
				},
			} {
				broken := deployExample(t, name).copy(t)
				breakIt(broken)
				if len(sgGraph(broken)) == 0 {
					t.Errorf("%s: not detected", what)
				}
			}
		})
	}
}

func TestDataServicesAreIsolated(t *testing.T) {
	for _, name := range examples {
		t.Run(name+": database and cache subnets have no route out of the VPC", func(t *testing.T) {
			s := deployExample(t, name)
			for _, r := range s.of(tRoute) {
				if r.str("routeTableId") == "rt-data-id" {
					t.Errorf("data route table has a route: %v", r.In)
				}
			}
			for _, a := range s.of(tRTA) {
				sub := s.byID(a.str("subnetId"))
				if sub != nil && path(sub.In, "tags.tier") == "data" && a.str("routeTableId") != "rt-data-id" {
					t.Errorf("data subnet %s is associated with %s", sub.Name, a.str("routeTableId"))
				}
			}
			groups := []*res{s.named(t, "aws:rds/subnetGroup:SubnetGroup", "db-subnets"), s.named(t, tCacheSubnets, "cache-subnets")}
			for _, g := range groups {
				for _, id := range g.arr("subnetIds") {
					if sub := s.byID(id.(string)); sub == nil || path(sub.In, "tags.tier") != "data" {
						t.Errorf("%s: subnet %v is not a data subnet", g.Name, id)
					}
				}
			}
			nats := len(s.of(tNAT))
			want := 1
			if s.Cfg.NATPerAZ {
				want = s.Cfg.AZCount
			}
			if nats != want {
				t.Errorf("NAT gateways: got %d, want %d", nats, want)
			}
			var services []string
			for _, e := range s.of(tEndpoint) {
				services = append(services, strings.TrimPrefix(e.str("serviceName"), "com.amazonaws."+mockRegion+"."))
			}
			sort.Strings(services)
			if got, want := strings.Join(services, ","), "ecr.api,ecr.dkr,kinesis-streams,kms,logs,s3,secretsmanager"; got != want {
				t.Errorf("VPC endpoints: got %s, want %s", got, want)
			}
		})
	}
}
