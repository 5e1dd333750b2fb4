package process

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/delegation-program/uptime-coordinator/workers"
)

// The test binary doubles as the verifier the tests launch (the standard
// library's helper-process pattern): with childSwitch set in its
// environment it runs testChild instead of the tests; with
// coordinatorSwitch, testCoordinator.
const (
	childSwitch       = "PROCESS_TEST_CHILD"
	coordinatorSwitch = "PROCESS_TEST_COORDINATOR"
)

// testCoordinator is a coordinator of its own, for the tests that kill one:
// it becomes the subreaper, runs one batch of one verifier, the command
// PROCESS_TEST_COMMAND, recording its process groups in the directory
// PROCESS_TEST_GROUPS and logging JSON to stdout, then prints "verified:"
// and the outcome and waits to be killed.
func testCoordinator() int {
	if err := BecomeSubreaper(); err != nil {
		fmt.Println("subreaper:", err)
		return 2
	}
	o := workers.Options{Command: os.Getenv("PROCESS_TEST_COMMAND"), Postgres: workers.Postgres{Host: "127.0.0.1", Port: 5432, DB: "delegation"}}
	l := New(o, slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	l.Environ = baseEnv
	l.GroupsDir = os.Getenv("PROCESS_TEST_GROUPS")
	l.Grace = 2 * time.Second
	l.Now = func() time.Time { return now }
	err := l.Verify(context.Background(), batch, batch.Split(1))
	fmt.Println("verified:", err)
	select {}
}

// testChild is the verifier of the tests. Its arguments are a mode, the
// mode's parameters, then START and END as the launcher appends them.
func testChild(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "test child: want MODE ... START END, got", args)
		return 2
	}
	mode, params := args[0], args[1:len(args)-2]
	name := os.Getenv("JobName")
	index := name[strings.LastIndexByte(name, '-')+1:]
	param := func(i int) string {
		if i < len(params) {
			return params[i]
		}
		return ""
	}
	writePid := func(dir, suffix string) {
		if err := os.WriteFile(filepath.Join(dir, index+suffix+".pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	switch mode {
	case "ok":
		fmt.Println("verifying", args[len(args)-2], "to", args[len(args)-1])
		fmt.Fprintln(os.Stderr, "a line on stderr")
		return 0
	case "sleep": // sleep DURATION
		d, _ := time.ParseDuration(param(0))
		time.Sleep(d)
		fmt.Println("done")
		return 0
	case "failat": // failat INDEX CODE PIDDIR OTHERS: mini-batch INDEX fails once the OTHERS have started (written their pids), the others hang
		if index == param(0) {
			others, _ := strconv.Atoi(param(3))
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if files, _ := filepath.Glob(filepath.Join(param(2), "*.pid")); len(files) >= others {
					break
				}
			}
			for i := range 15 {
				fmt.Fprintf(os.Stderr, "error line %d: boom\n", i)
			}
			code, _ := strconv.Atoi(param(1))
			return code
		}
		writePid(param(2), "")
		select {}
	case "hang": // hang PIDDIR
		writePid(param(0), "")
		select {}
	case "stubborn": // stubborn PIDDIR: ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		writePid(param(0), "")
		select {}
	case "family", "stubbornfamily", "orphan", "escapee": // PIDDIR: starts a grandchild (one that ignores SIGTERM but with family; in a session of its own with escapee), then hangs, or exits 0 (orphan, escapee)
		grandchild := "stubborngrandchild"
		if mode == "family" {
			grandchild = "grandchild"
		}
		cmd := exec.Command(os.Args[0], append([]string{grandchild, param(0)}, args[len(args)-2:]...)...)
		if mode == "escapee" {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		for { // until the grandchild wrote its pid (not only created the file)
			if b, err := os.ReadFile(filepath.Join(param(0), index+"-grandchild.pid")); err == nil && len(b) > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if mode == "orphan" || mode == "escapee" {
			return 0
		}
		writePid(param(0), "")
		select {}
	case "grandchild", "stubborngrandchild": // PIDDIR; stubborngrandchild ignores SIGTERM
		if mode == "stubborngrandchild" {
			signal.Ignore(syscall.SIGTERM)
		}
		writePid(param(0), "-grandchild")
		select {}
	case "spam": // spam BYTES CODE: that much output in 100-byte lines, then one long unterminated line
		n, _ := strconv.Atoi(param(0))
		line := strings.Repeat("x", 90)
		for i := 0; i < n/100; i++ {
			fmt.Printf("%08d %s\n", i, line)
		}
		fmt.Fprintln(os.Stderr, "spam done")
		fmt.Print(strings.Repeat("y", 200<<10))
		code, _ := strconv.Atoi(param(1))
		return code
	case "dump": // dump DIR: the environment and arguments as JSON
		out, err := json.Marshal(map[string][]string{"env": os.Environ(), "args": args})
		if err == nil {
			err = os.WriteFile(filepath.Join(param(0), name+".json"), out, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		return 0
	case "echo": // echo: print every argument and the Postgres password
		fmt.Println("args:", strings.Join(args, " "))
		fmt.Fprintln(os.Stderr, "password is", os.Getenv("POSTGRES_PASSWORD"))
		return 1
	}
	fmt.Fprintln(os.Stderr, "test child: unknown mode", mode)
	return 2
}
