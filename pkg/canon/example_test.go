package canon_test

import (
	"fmt"

	"github.com/elemta/elemta/pkg/canon"
)

func Example() {
	h, b, err := canon.Parse("relaxed/simple")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", canon.Header(h, []byte("Subject:  Hello\r\n  world \r\n")))
	fmt.Printf("%q\n", canon.BodyBytes(b, []byte("Hi\n\n\n")))
	// Output:
	// "subject:Hello world\r\n"
	// "Hi\r\n"
}
