package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Main runs the agent as /init (PID 1): mounts, modules, network, the task,
// the report, then reboot or power-off. It never returns. Every error and
// panic after the network is up is reported to the callback as failed.
func Main() {
	_ = mountBase()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a := &runner{log: log, after: AfterReboot, sysBlock: "/sys/block", devDir: "/dev"}
	ctx := context.Background()
	func() {
		defer func() {
			if r := recover(); r != nil {
				a.fail(ctx, fmt.Errorf("agent panic: %v\n%s", r, debug.Stack()))
			}
		}()
		if err := a.run(ctx); err != nil {
			a.fail(ctx, err)
		}
	}()
	finish(a.after, log)
}

type runner struct {
	log      *slog.Logger
	after    string
	rep      *Reporter
	sysBlock string
	devDir   string
}

func (a *runner) fail(ctx context.Context, err error) {
	a.log.Error("agent failed", "err", err)
	if a.rep == nil {
		a.log.Error("cannot report: no network or callback")
		return
	}
	detail := err.Error()
	if len(detail) > 2000 {
		detail = detail[:2000]
	}
	if rerr := a.rep.Result(ctx, "failed", detail); rerr != nil {
		a.log.Error("report failed", "err", rerr)
	}
}

func (a *runner) run(ctx context.Context) error {
	start := time.Now()
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	cfg, perr := ParseCmdline(string(raw))
	if cfg.After == AfterReboot || cfg.After == AfterPoweroff {
		a.after = cfg.After
	}
	n, err := LoadModules(LoadOrderFile, a.log)
	a.log.Info("modules loaded", "count", n, "err", err)
	fw := ReadFirmware(EFIDir, mountEFIVars) // after the modules: efivarfs is one
	a.log.Info("firmware", fw.logAttrs()...)
	if !cfg.Network.Addr.IsValid() || (cfg.Network.MAC == nil && cfg.Network.Interface == "") {
		return perr
	}
	ifname, err := ConfigureNetwork(cfg.Network, "/", 30*time.Second, a.log)
	if err != nil {
		return err
	}
	a.log.Info("network up", "iface", ifname, "addr", cfg.Network.Addr, "gw", cfg.Network.Gateway)
	if cfg.Callback != "" && len(cfg.CAFingerprint) == 32 {
		a.rep = &Reporter{URL: cfg.Callback, Client: NewHTTPClient(cfg.CAFingerprint), Log: a.log}
	}
	if perr != nil {
		return perr
	}
	a.rep.Progress(ctx, fmt.Sprintf("agent started: task %s, network %s on %s (%.1fs after init)", cfg.Task, cfg.Network.Addr, ifname, time.Since(start).Seconds()))
	a.rep.Progress(ctx, fw.String())
	disks := a.settleDisks(30 * time.Second)
	var list []string
	for _, d := range disks {
		list = append(list, fmt.Sprintf("%s(%dB serial=%q removable=%v)", d.Name, d.Size, d.Serial, d.Removable))
	}
	a.rep.Progress(ctx, "disks: "+strings.Join(list, " "))
	switch cfg.Task {
	case TaskDeploy:
		detail, err := a.deploy(ctx, cfg, disks)
		if err != nil {
			return err
		}
		return a.result(ctx, "installed", detail)
	case TaskClean:
		detail, err := a.clean(ctx, cfg, disks)
		if err != nil {
			return err
		}
		return a.result(ctx, "cleaned", detail)
	}
	return fmt.Errorf("agent: unknown task %q", cfg.Task)
}

// result reports success; a report that cannot be delivered is logged only
// (reporting failed instead would be wrong).
func (a *runner) result(ctx context.Context, event, detail string) error {
	if err := a.rep.Result(ctx, event, detail); err != nil {
		a.log.Error("could not report result", "event", event, "err", err)
	}
	return nil
}

// settleDisks waits until the set of disks has not changed for 3 s (storage
// drivers scan asynchronously), at most max.
func (a *runner) settleDisks(maxWait time.Duration) []Disk {
	deadline := time.Now().Add(maxWait)
	var last string
	stable := time.Now()
	for {
		disks, _ := ListDisks(a.sysBlock, a.devDir)
		key := fmt.Sprint(disks)
		if key != last {
			last, stable = key, time.Now()
		}
		if (len(Fixed(disks)) > 0 && time.Since(stable) >= 3*time.Second) || time.Now().After(deadline) {
			return disks
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (a *runner) deploy(ctx context.Context, cfg Config, disks []Disk) (string, error) {
	hint, err := ParseDiskHint(cfg.DiskHint)
	if err != nil {
		return "", err
	}
	d, err := SelectDisk(disks, hint)
	if err != nil {
		return "", err
	}
	a.rep.Progress(ctx, fmt.Sprintf("deploying to %s (%d bytes)", d.Path, d.Size))
	dev, err := OpenDevice(d.Path)
	if err != nil {
		return "", err
	}
	defer dev.Close()
	start := time.Now()
	res, err := Deploy(ctx, NewHTTPClient(cfg.CAFingerprint), cfg.Image, cfg.SHA256, dev,
		func(s string) { a.rep.Progress(ctx, s) })
	if err != nil {
		return "", err
	}
	seed, err := WriteSeed(dev, cfg.Network, "bootpilot-"+cfg.SHA256[:16]+"-"+strconv.FormatInt(time.Now().Unix(), 10))
	if err != nil {
		return "", err
	}
	if err := dev.Sync(); err != nil {
		return "", fmt.Errorf("agent: sync %s: %w", d.Path, err)
	}
	return fmt.Sprintf("%s image written to %s: %d bytes downloaded, %d written in %.1fs, sha256 ok; %s",
		res.Compression, d.Path, res.Downloaded, res.Written, time.Since(start).Seconds(), seed), nil
}

func (a *runner) clean(ctx context.Context, cfg Config, disks []Disk) (string, error) {
	fixed := Fixed(disks)
	if len(fixed) == 0 {
		return "", fmt.Errorf("agent: clean: %w", ErrNoDisk)
	}
	var done []string
	var errs []error
	for _, d := range fixed {
		start := time.Now()
		err := func() error {
			dev, err := OpenDevice(d.Path)
			if err != nil {
				return err
			}
			defer dev.Close()
			regions, err := Clean(dev, cfg.CleanMethod, func(s string) { a.rep.Progress(ctx, d.Name+": "+s) })
			if err != nil {
				return err
			}
			return VerifyZero(dev, regions, 256, uint64(time.Now().UnixNano()))
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Path, err))
			continue
		}
		msg := fmt.Sprintf("%s %s-cleaned and verified in %.1fs", d.Path, cfg.CleanMethod, time.Since(start).Seconds())
		a.rep.Progress(ctx, msg)
		done = append(done, msg)
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("agent: clean: %w", err)
	}
	return strings.Join(done, "; "), nil
}
