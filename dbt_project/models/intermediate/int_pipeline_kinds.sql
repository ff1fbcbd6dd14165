-- One row per CRM pipeline (int_crm__pipeline_stages, and any pipeline a lead names without
-- stage metadata), classified acquisition | repeat:
--   1. the editable seed pipeline_kinds (crm, pipeline_id) when it lists the pipeline;
--   2. else `repeat` when the pipeline's name contains «повтор» or "repeat" (any case);
--   3. else `acquisition`.
-- pipeline_kind_basis says which rule decided: seed | name | default.
-- translate() folds the Cyrillic capitals of «ПОВТОР» first: PostgreSQL's lower() leaves
-- non-ASCII letters alone under the C locale.
with

named as (

    select distinct crm, account, pipeline_id, pipeline_name
    from {{ ref('int_crm__pipeline_stages') }}

),

unnamed as (

    select distinct leads.crm, leads.account, leads.pipeline_id,
        cast(null as varchar) as pipeline_name
    from {{ ref('int_crm__leads_unioned') }} as leads
    where not exists (
        select 1 from named
        where named.crm = leads.crm
            and named.account = leads.account
            and named.pipeline_id = leads.pipeline_id
    )

),

pipelines as (

    select * from named
    union all
    select * from unnamed

),

seeded as (

    select crm, pipeline_id, pipeline_kind from {{ ref('pipeline_kinds') }}

),

classified as (

    select
        pipelines.crm,
        pipelines.account,
        pipelines.pipeline_id,
        pipelines.pipeline_name,
        seeded.pipeline_kind as seed_kind,
        coalesce(
            lower(translate(pipelines.pipeline_name, 'ПОВТР', 'повтр')) like '%повтор%'
            or lower(pipelines.pipeline_name) like '%repeat%',
            false
        ) as name_says_repeat
    from pipelines
    left join seeded
        on pipelines.crm = seeded.crm
        and pipelines.pipeline_id = seeded.pipeline_id

),

final as (

    select
        crm,
        account,
        pipeline_id,
        pipeline_name,
        case
            when seed_kind is not null then seed_kind
            when name_says_repeat then 'repeat'
            else 'acquisition'
        end as pipeline_kind,
        case
            when seed_kind is not null then 'seed'
            when name_says_repeat then 'name'
            else 'default'
        end as pipeline_kind_basis
    from classified

)

select * from final
