package tables

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// parseFloat32 and parseFloat64 agree with strconv on every input: value, bits and refusal.
func TestParseFloatAgreesWithStrconv(t *testing.T) {
	t.Parallel()
	cases := []string{"0", "-0", "+0", "1", "-1", "0.1", ".5", "5.", "1e3", "1E-3", "-2.5e+10", "3.4028235e38", "3.4028236e38",
		"1e39", "1e-46", "1.4e-45", "1.17549435e-38", "1.1754942e-38", "123456789012345678901", "0.000000000000000000000001",
		"16777217", "16777216.5", "33554431", "0.1000000000000000055511151231257827", "inf", "-Inf", "NaN", "nan", "0x1p-2",
		"1_000", "", ".", "-", "+", "e5", "1e", "1e+", "1.2.3", "1,5", " 1", "1 ", "abc", "1e99999", "9007199254740993",
		"2.5000000000000000", "7.006492e-46", "340282356779733661637539395458142568448"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		f := math.Float32frombits(r.Uint32())
		cases = append(cases, strconv.FormatFloat(float64(f), 'g', -1, 32), strconv.FormatFloat(float64(f), 'e', 12, 64))
		d := r.Float64()*2 - 1
		cases = append(cases, strconv.FormatFloat(d, 'g', -1, 64), strconv.FormatFloat(d, 'f', r.IntN(12), 64))
		// Exactly halfway between two float32s, and a hair either side.
		h := float64(math.Float32frombits(r.Uint32()&0x7effffff)) + math.Ldexp(1, -25)
		cases = append(cases, strconv.FormatFloat(h, 'g', -1, 64), strconv.FormatFloat(math.Nextafter(h, 0), 'g', -1, 64))
	}
	for _, c := range cases {
		w32, e32 := strconv.ParseFloat(c, 32)
		g32, ge32 := parseFloat32([]byte(c))
		require.Equal(t, e32 == nil, ge32 == nil, "%q as float32", c)
		require.Equal(t, math.Float32bits(float32(w32)), math.Float32bits(g32), "%q as float32", c)
		w64, e64 := strconv.ParseFloat(c, 64)
		g64, ge64 := parseFloat64([]byte(c))
		require.Equal(t, e64 == nil, ge64 == nil, "%q as float64", c)
		if !math.IsNaN(w64) {
			require.Equal(t, math.Float64bits(w64), math.Float64bits(g64), "%q as float64", c)
		}
	}
}

// decimalPrefix reads eight digits at a time only where all eight are digits: a byte just outside
// '0'..'9' ('/', ':', '.', 'e', ',') anywhere among them ends the number there, as byte by byte.
func TestDecimalPrefixStopsAtTheFirstNonDigit(t *testing.T) {
	t.Parallel()
	for _, stop := range []byte("/:.eE,x \x00\xff") {
		for at := range 12 {
			digits := []byte("0.123456789012")
			cell := append(append(append([]byte{}, digits[:2+at]...), stop), digits[2+at:]...)
			mant, exp, neg, n, ok := decimalPrefix(cell)
			wmant, wexp, wneg, wok := plainDecimal(cell[:2+at])
			if stop == 'e' || stop == 'E' {
				continue // an exponent follows: covered by TestParseFloatAgreesWithStrconv
			}
			require.Equal(t, 2+at, n, "%q", cell)
			require.Equal(t, []any{wmant, wexp, wneg, wok}, []any{mant, exp, neg, ok}, "%q", cell)
		}
	}
	mant, exp, _, n, ok := decimalPrefix([]byte("0.00000000123456789,1"))
	require.Equal(t, []any{uint64(123456789), -17, 19, true}, []any{mant, exp, n, ok})
}
