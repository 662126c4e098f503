package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readRSSMB returns a process's VmRSS in MB (2^20 bytes).
func readRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					return 0, err
				}
				return kb / 1024, nil
			}
		}
	}
	return 0, errors.New("no VmRSS (not a process?)")
}

// readLoadAvg returns the machine's 1-minute load average, 0 when
// /proc/loadavg cannot be read.
func readLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v
}

// selfCPU is this process's user+sys time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type hostCPU struct{ busy, total uint64 }

// readHostCPU reads the machine's aggregate jiffies from /proc/stat; idle
// and iowait are not busy.
func readHostCPU() (hostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return hostCPU{}, errors.New("malformed /proc/stat")
	}
	var h hostCPU
	for i, v := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return hostCPU{}, err
		}
		h.total += n
		if i != 3 && i != 4 {
			h.busy += n
		}
	}
	return h, nil
}

var clockTicks = sync.OnceValue(func() int64 {
	// AT_CLKTCK (17) from the auxiliary vector; 100 on every common Linux
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for i := 0; i+16 <= len(b); i += 16 {
			k := binary.NativeEndian.Uint64(b[i:])
			v := binary.NativeEndian.Uint64(b[i+8:])
			if k == 17 && v > 0 {
				return int64(v)
			}
			if k == 0 {
				break
			}
		}
	}
	return 100
})

// treeUsage is a process's CPU time and RSS together with its descendants'
// (transcoder processes some gateways spawn, e.g. ffmpeg).
type treeUsage struct {
	self, children       time.Duration // user+sys; children includes reaped ones
	selfRSS, childrenRSS float64       // MB
	nChildren            int
}

// readTree reads pid and its live descendants from /proc. The CPU of
// descendants that ended is in pid's cutime+cstime once reaped.
func readTree(pid int) (treeUsage, error) {
	var u treeUsage
	self, reaped, err := readProcTimes(pid)
	if err != nil {
		return u, err
	}
	u.self, u.children = self, reaped
	if u.selfRSS, err = readRSSMB(pid); err != nil {
		return u, err
	}
	for _, c := range descendants(pid) {
		s, r, err := readProcTimes(c)
		if err != nil {
			continue // ended meanwhile
		}
		u.children += s + r
		if rss, err := readRSSMB(c); err == nil {
			u.childrenRSS += rss
		}
		u.nChildren++
	}
	return u, nil
}

// readProcTimes returns utime+stime and cutime+cstime of a process.
func readProcTimes(pid int) (self, reaped time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, errors.New("short /proc stat")
	}
	var v [4]uint64
	for k := range v {
		if v[k], err = strconv.ParseUint(f[11+k], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	tick := time.Second / time.Duration(clockTicks())
	return time.Duration(v[0]+v[1]) * tick, time.Duration(v[2]+v[3]) * tick, nil
}

// descendants lists pid's live descendants from /proc/<pid>/task/*/children.
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			if err != nil {
				continue
			}
			for _, s := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(s); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}
