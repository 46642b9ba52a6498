package bustest_test

import (
	"fmt"
	"strings"
	"sync"

	"github.com/heraldbus/herald/bustest"
)

func ExampleBuffer() {
	var out bustest.Buffer
	var wg sync.WaitGroup
	for _, line := range []string{"billing: charged\n", "shipping: shipped\n"} {
		wg.Go(func() { _, _ = out.Write([]byte(line)) })
	}
	wg.Wait()
	fmt.Println(strings.Count(out.String(), "\n"), "lines")
	// Output: 2 lines
}
