package main

import (
	"bufio"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// winningNumber is the number the central draws; every file big enough to
// matter contains bets on it so a run always has winners to announce.
const winningNumber = 7574

const (
	minDocument = 20_000_000
	maxDocument = 45_999_999

	// Files below minWinnersFile bets may have no winner; at or above it we
	// force one winner per winnersEvery bets, plus one.
	minWinnersFile = 500
	winnersEvery   = 8000

	// writeBufferSize keeps syscalls rare: one write per ~5000 rows.
	writeBufferSize = 256 << 10
)

// courseSizes are the bet counts of the course's official agency files, so
// that a default run has the same shape as the real data set.
var courseSizes = [...]int{26936, 25518, 16014, 9238, 991}

// defaultAgencyBets is used for agencies beyond the course's five.
const defaultAgencyBets = 15000

// betsFor returns how many bets agency (1-based) gets; perAgency == 0 means
// "the course's shape".
func betsFor(agency, perAgency int) int {
	if perAgency > 0 {
		return perAgency
	}
	if agency >= 1 && agency <= len(courseSizes) {
		return courseSizes[agency-1]
	}
	return defaultAgencyBets
}

// Given names are split by gender so that two-name combinations read like
// real people ("Tiago Nicolás", not "Tiago Camila").
var maleNames = []string{
	"Santiago", "Mateo", "Thiago", "Tiago", "Benjamín", "Joaquín", "Lautaro",
	"Bautista", "Felipe", "Lucas", "Juan", "Martín", "Nicolás", "Agustín",
	"Tomás", "Facundo", "Gonzalo", "Matías", "Ezequiel", "Lionel", "Emanuel",
	"Sebastián", "Ignacio", "Franco", "Valentín", "Julián", "Ramiro",
	"Maximiliano", "Gastón", "Hernán", "Andrés",
}

var femaleNames = []string{
	"Camila", "Valentina", "Martina", "Sofía", "Lucía", "Catalina", "Emilia",
	"Julieta", "Florencia", "Agustina", "Milagros", "María", "Ana", "Paula",
	"Rocío", "Belén", "Micaela", "Carolina", "Luciana", "Victoria", "Josefina",
	"Abril", "Guadalupe", "Ángeles", "Inés", "Mónica", "Noelia", "Soledad",
	"Celeste", "Mía", "Pilar",
}

var surnames = []string{
	"González", "Rodríguez", "Gómez", "Fernández", "López", "Díaz", "Martínez",
	"Pérez", "García", "Sánchez", "Romero", "Sosa", "Álvarez", "Torres", "Ruiz",
	"Ramírez", "Flores", "Benítez", "Acosta", "Medina", "Herrera", "Suárez",
	"Aguirre", "Giménez", "Gutiérrez", "Pereyra", "Rojas", "Molina", "Castro",
	"Ortiz", "Silva", "Núñez", "Luna", "Juárez", "Cabrera", "Ríos", "Morales",
	"Godoy", "Moreno", "Ferreyra", "Domínguez", "Carrizo", "Peralta",
	"Castillo", "Ledesma", "Quiroga", "Vega", "Muñoz", "Ojeda", "Ponce",
	"Villalba", "Cardozo", "Navarro", "Coronel", "Vázquez", "Mamani",
	"Fornerón", "Hernández", "Quispe", "Chávez",
}

// birthdates holds every day from 1950-01-01 to 2005-12-31 pre-formatted,
// so a row picks a valid calendar date with one index and no formatting.
var birthdates = sync.OnceValue(func() [][10]byte {
	first := time.Date(1950, time.January, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(2005, time.December, 31, 0, 0, 0, 0, time.UTC)
	var days [][10]byte
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		var b [10]byte
		d.AppendFormat(b[:0], time.DateOnly)
		days = append(days, b)
	}
	return days
})

// writeAgencyFile streams bets rows for one agency to w and returns how many
// of them are on the winning number. The output depends only on (agency,
// bets, seed), never on other agencies, so files can be generated in any
// order or subset and still be byte-identical.
func writeAgencyFile(w io.Writer, agency, bets int, seed uint64) (winners int, err error) {
	r := rand.New(rand.NewPCG(seed, uint64(agency)))
	dates := birthdates()
	forced := forcedWinners(r, bets)

	bw := bufio.NewWriterSize(w, writeBufferSize)
	line := make([]byte, 0, 128) // reused: no allocation per row
	for i := range bets {
		line = line[:0]

		names := maleNames
		if r.IntN(2) == 0 {
			names = femaleNames
		}
		first := r.IntN(len(names))
		line = append(line, names[first]...)
		// Seven in ten people have two given names, as in the course's data.
		if r.IntN(10) < 7 {
			second := r.IntN(len(names) - 1)
			if second >= first {
				second++ // never "Juan Juan"
			}
			line = append(line, ' ')
			line = append(line, names[second]...)
		}
		line = append(line, ',')
		line = append(line, surnames[r.IntN(len(surnames))]...)
		line = append(line, ',')
		line = strconv.AppendInt(line, int64(minDocument+r.IntN(maxDocument-minDocument+1)), 10)
		line = append(line, ',')
		date := dates[r.IntN(len(dates))]
		line = append(line, date[:]...)
		line = append(line, ',')

		// The number is always drawn so that forcing a winner does not shift
		// the random stream of the rows after it.
		number := r.IntN(10000)
		if len(forced) > 0 && forced[0] == i {
			forced = forced[1:]
			number = winningNumber
		}
		if number == winningNumber {
			winners++
		}
		line = strconv.AppendInt(line, int64(number), 10)
		line = append(line, '\r', '\n')

		if _, err := bw.Write(line); err != nil {
			return winners, err
		}
	}
	return winners, bw.Flush()
}

// forcedWinners returns the ascending row indexes that must bet on the
// winning number: one random row in each of k equal segments, so they never
// collide and are spread over the whole file.
func forcedWinners(r *rand.Rand, bets int) []int {
	if bets < minWinnersFile {
		return nil
	}
	k := bets/winnersEvery + 1
	segment := bets / k
	rows := make([]int, k)
	for j := range rows {
		rows[j] = j*segment + r.IntN(segment)
	}
	return rows
}
