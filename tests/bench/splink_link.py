"""The Splink baseline of the matching benchmark (tests/bench/matching.rs).

Links the proposal persons (persons.csv) to the civil registry (registry.csv) with
Splink on DuckDB — link_only, the same three blocking rules as DTKS's linker, comparable
comparisons, u by random sampling, m by EM — keeps the best registry candidate per
person at match probability >= 0.95, scores it against the ground truth, and prints one
JSON line: seconds (training included), links, correct, precision, recall, f1.

    python splink_link.py REGISTRY_CSV PERSONS_CSV
"""

import json
import sys
import time

import duckdb
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

THRESHOLD = 0.95


def main(registry_csv: str, persons_csv: str) -> None:
    started = time.perf_counter()
    con = duckdb.connect()
    # Both sides get the same derived columns: upper-case name, its parts sorted,
    # district and regency from the village code.
    derived = """
        upper(trim(full_name)) AS full_name,
        array_to_string(list_sort(string_split(upper(trim(full_name)), ' ')), ' ') AS name_sorted,
        CAST(birth_date AS VARCHAR) AS birth_date,
        CAST(sex AS VARCHAR) AS sex,
        village_code,
        substr(village_code, 1, 8) AS district,
        substr(village_code, 1, 5) AS regency
    """
    con.execute(
        f"""CREATE TABLE registry AS SELECT nik AS unique_id, {derived}
            FROM read_csv('{registry_csv}', header=true, all_varchar=true)"""
    )
    con.execute(
        f"""CREATE TABLE persons AS SELECT id AS unique_id, {derived}
            FROM read_csv('{persons_csv}', header=true, all_varchar=true)"""
    )
    # The ground truth stays out of Splink's sight (and both sides need the same columns).
    con.execute(
        f"""CREATE TABLE truth AS SELECT id AS unique_id, true_nik
            FROM read_csv('{persons_csv}', header=true, all_varchar=true)"""
    )
    db_api = DuckDBAPI(con)
    left = db_api.register("persons", dataset_display_name="persons")
    right = db_api.register("registry", dataset_display_name="registry")

    name = cl.CustomComparison(
        output_column_name="full_name",
        comparison_levels=[
            cll.NullLevel("full_name"),
            cll.ExactMatchLevel("full_name"),
            cll.ExactMatchLevel("name_sorted"),
            cll.JaroWinklerLevel("full_name", 0.92),
            cll.JaroWinklerLevel("full_name", 0.80),
            cll.ElseLevel(),
        ],
    )
    region = cl.CustomComparison(
        output_column_name="region",
        comparison_levels=[
            cll.NullLevel("village_code"),
            cll.ExactMatchLevel("village_code"),
            cll.ExactMatchLevel("district"),
            cll.ExactMatchLevel("regency"),
            cll.ElseLevel(),
        ],
    )
    settings = SettingsCreator(
        link_type="link_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=[
            block_on("birth_date", "sex", "district"),
            block_on("name_sorted", "sex", "village_code"),
            block_on("name_sorted", "birth_date"),
        ],
        comparisons=[
            name,
            cl.DateOfBirthComparison(
                "birth_date",
                input_is_string=True,
                datetime_metrics=["year"],
                datetime_thresholds=[1],
            ),
            cl.ExactMatch("sex"),
            region,
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker([left, right], settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("name_sorted", "birth_date", "sex")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("birth_date", "sex", "district")
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("name_sorted", "sex", "village_code")
    )
    predictions = linker.inference.predict(threshold_match_probability=THRESHOLD)
    table = predictions.physical_name
    # The best registry candidate per person.
    best = con.execute(
        f"""
        WITH oriented AS (
            SELECT
                CASE WHEN source_dataset_l = 'persons' THEN unique_id_l ELSE unique_id_r END AS person,
                CASE WHEN source_dataset_l = 'persons' THEN unique_id_r ELSE unique_id_l END AS nik,
                match_probability
            FROM {table}
        )
        SELECT person, arg_max(nik, match_probability) AS nik FROM oriented GROUP BY person
        """
    ).fetchall()
    seconds = time.perf_counter() - started
    truth = dict(con.execute("SELECT unique_id, true_nik FROM truth").fetchall())
    # A person without a true NIK is not in the registry: any link for them is wrong,
    # and they are not among those recall counts.
    present = sum(1 for nik in truth.values() if nik)
    links = len(best)
    correct = sum(1 for person, nik in best if nik and truth.get(person) == nik)
    precision = correct / links if links else 0.0
    recall = correct / present if present else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "links": links,
                "correct": correct,
                "persons": present,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
