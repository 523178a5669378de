package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// What the stand-in sends: the message as received (it is parsed again in
// the worker), the header fields recorded with AddHeader, the session, the
// phase and the results recorded so far, each with its config position
// (so Find and FindAll answer in the worker as they do here).

func wireMsg(m *registry.Message) *wireMessage {
	if m == nil {
		return nil
	}
	return &wireMessage{Raw: m.Raw, Envelope: m.Envelope, Added: m.AddedHeaders()}
}

func wirePCOf(pc *registry.ProcessingContext) *wirePC {
	if pc == nil {
		return nil
	}
	w := &wirePC{Phase: pc.Phase}
	if pc.Session != nil {
		w.Session = *pc.Session
	}
	orders := catalog.ResultOrders(pc) // first: results only grow, so Results has them all
	results := pc.Results()[:len(orders)]
	w.Results = make([]wireResult, len(results))
	for i, r := range results {
		w.Results[i] = wireOf(r, orders[i])
	}
	return w
}

// messageCall is a call frame for a method on msg, with the processing
// context ctx carries (capability methods read earlier results from it).
func messageCall(ctx context.Context, method string, msg *registry.Message) *callFrame {
	cf := &callFrame{Method: method, Message: wireMsg(msg)}
	if pc, ok := registry.ProcessingContextFrom(ctx); ok {
		cf.PC = wirePCOf(pc)
	}
	return cf
}

// applyAdded records on msg the fields the plugin added with AddHeader in
// the worker.
func applyAdded(msg *registry.Message, reply *replyFrame) {
	if msg == nil {
		return
	}
	for _, f := range reply.Added {
		msg.AddHeader(f.Name, f.Value)
	}
}

// HandleStage implements registry.StageHandler: the plugin's own
// HandleStage, or the scan adapter, runs in a worker.
func (s *isolated) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if pc == nil || pc.Message == nil {
		return nil, errors.New("no message")
	}
	reply, err := s.do(ctx, &callFrame{Method: methodStage, Stage: stage, Message: wireMsg(pc.Message), PC: wirePCOf(pc)})
	if err != nil {
		return nil, err
	}
	applyAdded(pc.Message, reply)
	if reply.Result == nil {
		return nil, errors.New("worker replied without a result")
	}
	res := reply.Result.result()
	return res, nil
}

// EndSession implements registry.SessionEnder for plugins that do.
func (s *isolated) EndSession(ctx context.Context, pc *registry.ProcessingContext) error {
	if !s.implements(reflect.TypeFor[registry.SessionEnder]()) || pc == nil || pc.Message == nil {
		return nil
	}
	_, err := s.do(ctx, &callFrame{Method: methodEndSession, Message: wireMsg(pc.Message), PC: wirePCOf(pc)})
	return err
}

// HealthCheck implements registry.HealthChecker: every worker must be
// live, and the plugin's own check passes in one of them.
func (s *isolated) HealthCheck(ctx context.Context) error {
	st := s.stats()
	if st.Live < s.iso.Workers {
		return fmt.Errorf("%d of %d plugin workers live (%d crashes)", st.Live, s.iso.Workers, st.Crashes)
	}
	if !s.implements(reflect.TypeFor[registry.HealthChecker]()) {
		return nil
	}
	_, err := s.do(ctx, &callFrame{Method: methodHealth})
	return err
}

func valueOf[T any](reply *replyFrame) (T, error) {
	var zero T
	if reply.Value == nil {
		return zero, nil
	}
	v, ok := reply.Value.(T)
	if !ok {
		return zero, fmt.Errorf("worker returned a %T, want a %T", reply.Value, zero)
	}
	return v, nil
}

// ScanMessage implements registry.AntivirusPlugin and AntispamPlugin.
func (s *isolated) ScanMessage(ctx context.Context, msg *registry.Message) (*registry.ScanResult, error) {
	reply, err := s.do(ctx, messageCall(ctx, methodScan, msg))
	if err != nil {
		return nil, err
	}
	return valueOf[*registry.ScanResult](reply)
}

// GetScore implements registry.AntispamPlugin.
func (s *isolated) GetScore(ctx context.Context, msg *registry.Message) (float64, error) {
	reply, err := s.do(ctx, messageCall(ctx, methodScore, msg))
	if err != nil {
		return 0, err
	}
	return reply.Score, nil
}

// GetInfo implements registry.AntivirusPlugin; nil when the worker cannot
// be asked.
func (s *isolated) GetInfo() *registry.PluginInfo {
	ctx, cancel := context.WithTimeout(context.Background(), s.tmo)
	defer cancel()
	reply, err := s.do(ctx, &callFrame{Method: methodInfo})
	if err != nil {
		return nil
	}
	info, _ := valueOf[*registry.PluginInfo](reply)
	return info
}

// VerifySignature implements registry.DKIMPlugin.
func (s *isolated) VerifySignature(ctx context.Context, msg *registry.Message) (*registry.DKIMResult, error) {
	reply, err := s.do(ctx, messageCall(ctx, methodVerifyDKIM, msg))
	if err != nil {
		return nil, err
	}
	return valueOf[*registry.DKIMResult](reply)
}

// SignMessage implements registry.DKIMPlugin.
func (s *isolated) SignMessage(ctx context.Context, msg *registry.Message, domain string) error {
	cf := messageCall(ctx, methodSignDKIM, msg)
	cf.Domain = domain
	reply, err := s.do(ctx, cf)
	if err != nil {
		return err
	}
	applyAdded(msg, reply)
	return nil
}

// CheckSPF implements registry.SPFPlugin.
func (s *isolated) CheckSPF(ctx context.Context, ip, domain string) (*registry.SPFResult, error) {
	cf := messageCall(ctx, methodCheckSPF, nil)
	cf.IP, cf.Domain = ip, domain
	reply, err := s.do(ctx, cf)
	if err != nil {
		return nil, err
	}
	return valueOf[*registry.SPFResult](reply)
}

// CheckDMARC implements registry.DMARCPlugin.
func (s *isolated) CheckDMARC(ctx context.Context, msg *registry.Message) (*registry.DMARCResult, error) {
	reply, err := s.do(ctx, messageCall(ctx, methodCheckDMARC, msg))
	if err != nil {
		return nil, err
	}
	return valueOf[*registry.DMARCResult](reply)
}

// VerifyChain implements registry.ARCPlugin.
func (s *isolated) VerifyChain(ctx context.Context, msg *registry.Message) (*registry.ARCResult, error) {
	reply, err := s.do(ctx, messageCall(ctx, methodVerifyChain, msg))
	if err != nil {
		return nil, err
	}
	return valueOf[*registry.ARCResult](reply)
}

// SealMessage implements registry.ARCPlugin.
func (s *isolated) SealMessage(ctx context.Context, msg *registry.Message) error {
	reply, err := s.do(ctx, messageCall(ctx, methodSeal, msg))
	if err != nil {
		return err
	}
	applyAdded(msg, reply)
	return nil
}
